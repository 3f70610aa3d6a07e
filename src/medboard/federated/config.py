"""The run configuration of the Flower app and its static section.

Flower flattens `[tool.flwr.app.config]` into one dict with dotted keys (`lora.r`,
`static.num-clients`). `FlConfig.from_run_config` turns that dict into typed values and names the
key when one is missing or of the wrong type. The `static` table holds what makes entries
comparable (the dataset and its hash, the number of sites, the partitioning, the evaluation, the
communication budget): a run whose static section differs from the track's reference is refused
before it starts and again at submission.
"""

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medboard.errors import MedboardError

STATIC_PREFIX = "static."
STRATEGIES = ("fedavg", "fedprox", "fedadam")
PARTITIONERS = ("iid", "dirichlet")
# FlowerTune counts MB as 1024**2 bytes and sets its budget at 200,000 MB ("200 GB"); medboard
# keeps that unit so its costs compare with the published table: 1 GB here = 1000 * 1024**2 B.
BYTES_PER_GB = 1000 * 1024**2


class ConfigError(MedboardError):
    """A run configuration that is missing a key, has a wrong type or a changed static section."""


class StaticSectionChanged(ConfigError):
    """The static section differs from the track's reference."""


Value = str | int | float | bool
# The pattern `flwr run --run-config` uses: key=value, values optionally quoted.
_PAIR = re.compile(r"(\S+?)=('[^']*'|\"[^\"]*\"|\S+)")


def _get(config: Mapping[str, Value], key: str, kind: type) -> Any:
    if key not in config:
        raise ConfigError(f"run config: key '{key}' is missing")
    value = config[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(
            f"run config: '{key}' must be {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


@dataclass(frozen=True)
class StaticSection:
    """`[tool.flwr.app.config.static]`: what a submission may not change."""

    dataset: str
    dataset_sha256: str
    num_clients: int
    partitioner: str
    partition_by: str
    dirichlet_alpha: float
    partition_seed: int
    eval_suite: str
    eval_limit: int
    comm_budget_gb: float

    @classmethod
    def from_run_config(cls, config: Mapping[str, Value]) -> "StaticSection":
        def get(key: str, kind: type) -> Any:
            return _get(config, STATIC_PREFIX + key, kind)

        section = cls(
            dataset=get("dataset", str),
            dataset_sha256=get("dataset-sha256", str),
            num_clients=get("num-clients", int),
            partitioner=get("partitioner", str),
            partition_by=get("partition-by", str),
            dirichlet_alpha=get("dirichlet-alpha", float),
            partition_seed=get("partition-seed", int),
            eval_suite=get("eval-suite", str),
            eval_limit=get("eval-limit", int),
            comm_budget_gb=get("comm-budget-gb", float),
        )
        if section.partitioner not in PARTITIONERS:
            raise ConfigError(
                f"run config: static.partitioner must be one of {', '.join(PARTITIONERS)}, "
                f"got '{section.partitioner}'"
            )
        if section.num_clients < 1:
            raise ConfigError("run config: static.num-clients must be at least 1")
        return section

    @property
    def budget_bytes(self) -> int:
        return int(self.comm_budget_gb * BYTES_PER_GB)


@dataclass(frozen=True)
class FlConfig:
    """The whole run configuration, typed."""

    static: StaticSection
    num_rounds: int
    strategy: str
    fraction_train: float
    fraction_evaluate: float
    proximal_mu: float
    server_learning_rate: float
    server_tau: float
    seed: int
    model: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: tuple[str, ...]
    local_steps: int
    batch_size: int
    learning_rate: float
    max_seq_length: int
    eval_examples: int
    threads: int
    data_path: str
    out_dir: str
    # Where a site trains: "cpu" (default) or "cuda" / "cuda:N"; optional, so older run configs
    # (and run.json files) stay valid.
    device: str = "cpu"

    @classmethod
    def from_run_config(cls, config: Mapping[str, Value]) -> "FlConfig":
        def get(key: str, kind: type) -> Any:
            return _get(config, key, kind)

        parsed = cls(
            static=StaticSection.from_run_config(config),
            num_rounds=get("num-server-rounds", int),
            strategy=get("strategy.name", str),
            fraction_train=get("strategy.fraction-train", float),
            fraction_evaluate=get("strategy.fraction-evaluate", float),
            proximal_mu=get("strategy.proximal-mu", float),
            server_learning_rate=get("strategy.server-learning-rate", float),
            server_tau=get("strategy.server-tau", float),
            seed=get("seed", int),
            model=get("model.name", str),
            lora_r=get("lora.r", int),
            lora_alpha=get("lora.alpha", int),
            lora_dropout=get("lora.dropout", float),
            target_modules=tuple(
                m.strip() for m in get("lora.target-modules", str).split(",") if m.strip()
            ),
            local_steps=get("train.local-steps", int),
            batch_size=get("train.batch-size", int),
            learning_rate=get("train.learning-rate", float),
            max_seq_length=get("train.max-seq-length", int),
            eval_examples=get("train.eval-examples", int),
            threads=get("train.threads", int),
            data_path=get("data-path", str),
            out_dir=get("out-dir", str),
            device=get("device", str) if "device" in config else "cpu",
        )
        if not re.fullmatch(r"cpu|cuda(:\d+)?", parsed.device):
            raise ConfigError(
                f"run config: device must be 'cpu', 'cuda' or 'cuda:N', got '{parsed.device}'"
            )
        if parsed.strategy not in STRATEGIES:
            raise ConfigError(
                f"run config: strategy.name must be one of {', '.join(STRATEGIES)}, "
                f"got '{parsed.strategy}'"
            )
        if not 0.0 < parsed.fraction_train <= 1.0:
            raise ConfigError("run config: strategy.fraction-train must be in (0, 1]")
        if not parsed.target_modules:
            raise ConfigError("run config: lora.target-modules names no module")
        return parsed


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Value]:
    """A nested TOML table as Flower's flat run config (`a.b.c` keys)."""
    flat: dict[str, Value] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_app(app: Path) -> dict[str, Any]:
    """The parsed pyproject.toml of a Flower app folder (or the file itself)."""
    path = app / "pyproject.toml" if app.is_dir() else app
    if not path.is_file():
        raise ConfigError(f"no Flower app at {app}: {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def app_run_config(app: Path) -> dict[str, Value]:
    """The flat `[tool.flwr.app.config]` of an app folder."""
    document = load_app(app)
    try:
        table = document["tool"]["flwr"]["app"]["config"]
    except KeyError:
        raise ConfigError(f"{app} has no [tool.flwr.app.config] section") from None
    return flatten(table)


def static_of(config: Mapping[str, Value]) -> dict[str, Value]:
    """The static section of a flat run config, without its prefix."""
    return {
        k[len(STATIC_PREFIX) :]: v for k, v in sorted(config.items()) if k.startswith(STATIC_PREFIX)
    }


def static_hash(static: Mapping[str, Value]) -> str:
    text = json.dumps(dict(sorted(static.items())), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_reference() -> Path:
    """The track's reference app: the repository's `flower/` folder."""
    candidate = Path(__file__).resolve().parents[3] / "flower"
    if not (candidate / "pyproject.toml").is_file():
        raise ConfigError(
            "cannot find the track's reference app (flower/pyproject.toml): pass --reference"
        )
    return candidate


def check_static(actual: Mapping[str, Value], reference: Mapping[str, Value], where: str) -> None:
    """Refuse a static section that differs from the reference, naming the first difference."""
    for key in sorted(set(actual) | set(reference)):
        if key not in actual:
            raise StaticSectionChanged(
                f"static section changed: '{key}' was removed (the track's reference, {where}, "
                f"sets it to {reference[key]!r})"
            )
        if key not in reference:
            raise StaticSectionChanged(
                f"static section changed: '{key}' is not in the track's reference ({where})"
            )
        if actual[key] != reference[key]:
            raise StaticSectionChanged(
                f"static section changed: '{key}' is {actual[key]!r}, the track's reference "
                f"({where}) requires {reference[key]!r}; a submission may not change "
                "[tool.flwr.app.config.static]"
            )


def check_overrides(overrides: Mapping[str, Value], config: Mapping[str, Value]) -> None:
    """--run-config may change the free keys only, and only keys that exist."""
    for key in overrides:
        if key.startswith(STATIC_PREFIX):
            raise StaticSectionChanged(
                f"static section changed: --run-config may not override '{key}'; "
                "a submission may not change [tool.flwr.app.config.static]"
            )
        if key not in config:
            raise ConfigError(f"--run-config: unknown key '{key}' (not in the app's run config)")


def parse_overrides(items: list[str]) -> dict[str, Value]:
    """`key=value` pairs with TOML values (as `flwr run --run-config`)."""
    overrides: dict[str, Value] = {}
    for item in items:
        pairs = _PAIR.findall(item)
        if not pairs and item.strip():
            raise ConfigError(f"--run-config: '{item}' is not key=value")
        for key, raw in pairs:
            try:
                overrides[key] = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                overrides[key] = raw.strip("'\"")
    return overrides


def format_overrides(overrides: Mapping[str, Value]) -> str:
    """The same pairs as one `--run-config` string that Flower parses back to the same values."""
    parts = []
    for key, value in overrides.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = json.dumps(value)
        else:
            text = repr(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)
