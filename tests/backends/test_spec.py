"""Model specs: prefixes, typed arguments, and the text they print back to."""

from pathlib import Path

import pytest

from medboard.backends import registry
from medboard.backends.spec import Arg, ModelSpec, parse_assignments, split_prefix
from medboard.errors import ModelError


def test_prefixes_and_the_default_backend(tmp_path: Path) -> None:
    assert split_prefix("fake") == ("fake", "")
    assert split_prefix("fake:bias=A") == ("fake", "bias=A")
    assert split_prefix("org/model") == (None, "org/model")
    assert split_prefix("/models/x.gguf") == (None, "/models/x.gguf")
    odd = tmp_path / "run:3"  # a local path that exists is a path, colon or not
    odd.mkdir()
    assert split_prefix(str(odd)) == (None, str(odd))


@pytest.mark.parametrize(
    ("text", "args", "printed"),
    [
        ("fake", {}, "fake"),
        ("fake:bias=A", {}, "fake:bias=A"),
        ("org/model", {"dtype": "bfloat16"}, "org/model -M dtype=bfloat16"),
        ("hf:org/model", {}, "org/model"),  # the default backend needs no prefix
        ("/m.gguf", {"batch_tokens": "8192", "compile": "off"},
         "/m.gguf -M batch_tokens=8192 -M compile=off"),
    ],
)  # fmt: skip
def test_a_spec_prints_back_to_text_that_resolves_to_it(
    text: str, args: dict, printed: str
) -> None:
    spec = registry.resolve(text, args)
    assert str(spec) == printed
    model, given = ModelSpec.from_text(str(spec))
    assert registry.resolve(model, given) == spec


def test_arguments_are_typed_by_the_backend() -> None:
    spec = registry.resolve("org/model", {"batch_tokens": "8192", "dtype": "float16"})
    assert spec.get("batch_tokens") == 8192 and spec.get("dtype") == "float16"
    assert spec.get("compile") is None  # not given: the backend's own default applies
    flag = Arg("a flag", kind=bool)
    assert [flag.parse("b", "f", v) for v in ("1", "yes", "off", False)] == [
        True, True, False, False
    ]  # fmt: skip
    with pytest.raises(ModelError, match="f takes true or false, not 'maybe'"):
        flag.parse("b", "f", "maybe")


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ("org/model", {"batch_tokens": "0"}, "batch_tokens must be at least 1, not 0"),
        ("org/model", {"batch_tokens": "-5"}, "batch_tokens must be at least 1, not -5"),
        ("openai:m", {"concurrency": "0"}, "concurrency must be at least 1, not 0"),
        ("openai:m", {"timeout": "-1"}, "timeout must be at least 1, not -1.0"),
        ("vllm:m", {"gpu_memory_utilization": "1.5"}, "must be at most 1.0, not 1.5"),
    ],
)
def test_numbers_out_of_their_range_are_one_line(text: str, args: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        registry.resolve(text, args)


def test_defaults_apply_only_where_the_backend_takes_them() -> None:
    assert registry.resolve("org/model", defaults={"dtype": "bfloat16"}).get("dtype") == "bfloat16"
    assert registry.resolve("fake", defaults={"dtype": "bfloat16"}).args == ()
    given = registry.resolve("org/model", {"dtype": "float32"}, defaults={"dtype": "bfloat16"})
    assert given.get("dtype") == "float32"


@pytest.mark.parametrize(
    ("items", "message"),
    [(["batch_tokens"], "-M takes key=value, not 'batch_tokens'"), (["=1"], "key=value")],
)
def test_assignments_need_a_key_and_a_value(items: list[str], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        parse_assignments(items)
    assert parse_assignments(["a=1, b=2", "c=x=y"]) == {"a": "1", "b": "2", "c": "x=y"}


def test_a_worker_adds_its_per_run_arguments_to_a_jobs_spec() -> None:
    job = registry.resolve("org/model", {"dtype": "bfloat16"})
    args = registry.per_run_args({"batch_tokens": "2048", "compile": "off"})
    run = registry.for_job(job, args)
    assert run.get("batch_tokens") == 2048 and run.get("compile") == "off"
    assert run.get("dtype") == "bfloat16"
    fake = registry.resolve("fake:bias=A")
    assert registry.for_job(fake, args) == fake  # the fake model takes none of them
    with pytest.raises(ModelError, match="dtype says which model is evaluated"):
        registry.per_run_args({"dtype": "float32"})
