from pathlib import Path

import pytest

from medboard.federated.config import (
    ConfigError,
    FlConfig,
    StaticSectionChanged,
    app_run_config,
    check_overrides,
    check_static,
    default_reference,
    format_overrides,
    parse_overrides,
    static_hash,
    static_of,
)
from tests.federated.helpers import REFERENCE_APP


def test_reference_app_parses_and_names_the_real_run() -> None:
    assert default_reference() == REFERENCE_APP
    config = app_run_config(REFERENCE_APP)
    cfg = FlConfig.from_run_config(config)
    assert cfg.static.num_clients == 10
    assert cfg.fraction_train * cfg.static.num_clients >= 1  # at least 10% sampled per round
    assert cfg.num_rounds >= 5
    assert cfg.static.eval_suite == "flowertune_medical"
    assert cfg.static.comm_budget_gb == 200.0
    assert cfg.model.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    components = (REFERENCE_APP / "pyproject.toml").read_text()
    assert 'serverapp = "medboard.federated.server_app:app"' in components
    assert 'clientapp = "medboard.federated.client_app:app"' in components


def test_flower_validates_the_reference_app() -> None:
    from flwr.cli.config_utils import load_and_validate

    config, _warnings = load_and_validate(REFERENCE_APP / "pyproject.toml")
    assert "federations" not in config["tool"]["flwr"]  # flwr run would rewrite the file


def test_changed_static_section_is_named_in_one_line() -> None:
    reference = static_of(app_run_config(REFERENCE_APP))
    changed = {**reference, "num-clients": 4}
    with pytest.raises(StaticSectionChanged) as info:
        check_static(changed, reference, "flower/pyproject.toml")
    message = str(info.value)
    assert "\n" not in message
    assert "'num-clients' is 4" in message and "requires 10" in message
    removed = {k: v for k, v in reference.items() if k != "eval-suite"}
    with pytest.raises(StaticSectionChanged, match="'eval-suite' was removed"):
        check_static(removed, reference, "ref")
    check_static(dict(reference), reference, "ref")
    assert static_hash(reference) == static_hash(dict(reversed(list(reference.items()))))


def test_overrides_may_not_touch_the_static_section() -> None:
    config = app_run_config(REFERENCE_APP)
    with pytest.raises(StaticSectionChanged, match="may not override 'static.num-clients'"):
        check_overrides({"static.num-clients": 2}, config)
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        check_overrides({"nope": 1}, config)
    check_overrides({"num-server-rounds": 2, "strategy.name": "fedprox"}, config)


def test_overrides_round_trip_through_flower_syntax() -> None:
    from flwr.common.config import parse_config_args

    values = {"a": 3, "b": 0.5, "c": "x y/z", "d": True, "e": "~/p"}
    text = format_overrides(values)
    assert parse_overrides([text]) == values
    assert parse_config_args([text]) == values


def test_wrong_type_and_unknown_strategy_fail_clearly(tmp_path: Path) -> None:
    config = app_run_config(REFERENCE_APP)
    with pytest.raises(ConfigError, match="'lora.r' must be int"):
        FlConfig.from_run_config({**config, "lora.r": "8"})
    with pytest.raises(ConfigError, match="strategy.name must be one of"):
        FlConfig.from_run_config({**config, "strategy.name": "fedsgd"})
    with pytest.raises(ConfigError, match="'seed' is missing"):
        FlConfig.from_run_config({k: v for k, v in config.items() if k != "seed"})
