"""CPU kernels: the float32 path for bfloat16 linear layers (same numbers as a bfloat16 GEMM),
compiled decoder layers while scoring, and the allocator setting."""

import hashlib
import json
import os
import platform
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from medboard.backends import ChoiceRequest, create_backend, kernels, probe
from medboard.backends.base import GenerateRequest
from medboard.backends.kernels import (
    CompiledLayers,
    compile_wanted,
    decoder_layers,
    keep_freed_memory,
    matmul_mode,
    normalizes_queries_or_keys,
    rotary_modules,
    rotate_half,
    use_float32_matmul,
)
from medboard.errors import ModelError
from medboard.results.schema import RunSpec
from tests.conftest import made_up_clock, read_json

Settings = Callable[[dict[str, Any]], None]  # inductor_settings


def test_linear_matches_a_bfloat16_gemm() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 48).to(torch.bfloat16)
    x = torch.randn(5, 7, 64).to(torch.bfloat16)
    # the bfloat16 GEMM's own arithmetic: exact products, float32 sums, one rounding
    expected = (x.double() @ layer.weight.double().T + layer.bias.double()).to(torch.bfloat16)
    native = layer(x)
    assert use_float32_matmul(layer) == 1
    mine = layer(x)
    assert mine.dtype == torch.bfloat16
    assert mine.shape == native.shape
    # rounding to bfloat16 may differ by one unit in the last place, nowhere by more
    ulp = expected.float().abs() * 2.0**-7 + 1e-30
    assert ((mine.float() - expected.float()).abs() <= ulp).all()
    assert (mine == expected).float().mean() > 0.95


def test_shared_input_is_converted_once_and_results_stay_separate() -> None:
    torch.manual_seed(1)
    model = torch.nn.ModuleDict(
        {"q": torch.nn.Linear(16, 8, bias=False), "k": torch.nn.Linear(16, 4, bias=False)}
    ).to(torch.bfloat16)
    x = torch.randn(3, 16).to(torch.bfloat16)
    before = (model["q"](x), model["k"](x))
    assert use_float32_matmul(model) == 2
    after = (model["q"](x), model["k"](x))
    y = torch.randn(3, 16).to(torch.bfloat16)  # a new input is converted anew
    torch.testing.assert_close(model["q"](y), torch.nn.functional.linear(y, model["q"].weight))
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a.float(), b.float(), atol=0.02, rtol=0.02)


def test_float32_layers_are_left_alone() -> None:
    assert use_float32_matmul(torch.nn.Linear(4, 4)) == 0


def test_mode_by_dtype_device_and_request() -> None:
    assert matmul_mode("float32", "cpu") is None
    assert matmul_mode("bfloat16", "cuda:0") == "native"
    assert matmul_mode("bfloat16", "cpu", "native") == "native"
    assert matmul_mode("bfloat16", "cpu", "float32") == "float32"
    with pytest.raises(ModelError, match="unknown bf16 matmul mode 'fast'"):
        matmul_mode("bfloat16", "cpu", "fast")


# TFLOP/s of bfloat16 products run natively and as float32 products, as measured on each kind
# of CPU (on the EPYCs bench/speed.py's matmul peaks, issue 30 and the kernels module; on the
# Xeon the probe itself, in the session of issue 30).
MEASURED = {
    "epyc-avx512-bf16-no-amx": ({"native": 0.985, "float32": 0.219}, "native"),
    "epyc-avx2": ({"native": 2 * 0.057, "float32": 2 * 0.092}, "float32"),
    "xeon-amx": ({"native": 1.99, "float32": 0.309}, "native"),
}


@pytest.mark.parametrize(("tflops", "expected"), MEASURED.values(), ids=MEASURED.keys())
def test_auto_takes_the_product_each_kind_of_cpu_runs_faster(
    tflops: dict[str, float], expected: str, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed = made_up_clock(monkeypatch, {name: 1 / speed for name, speed in tflops.items()})
    assert matmul_mode("bfloat16", "cpu") == expected
    assert matmul_mode("bfloat16", "cpu") == expected  # kept: not timed again
    assert timed == [["native", "float32"]]


def test_the_probe_runs_once_per_machine_and_again_when_torch_is_steered(
    medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, float] = {}
    real = probe.timings

    def timings(candidates: dict, repeats: int = probe.REPEATS) -> dict[str, float]:
        seen.update(real(candidates, repeats))
        return dict(seen)

    monkeypatch.setattr(probe, "timings", timings)
    chosen = matmul_mode("bfloat16", "cpu")  # timed here, for real
    assert chosen == probe.fastest_of(seen) and set(seen) == {"native", "float32"}
    stored = read_json(medboard_home / "verdicts.json")
    assert [v for k, v in stored.items() if k.startswith("bf16-matmul:")] == [chosen]
    seen.clear()
    assert matmul_mode("bfloat16", "cpu") == chosen and not seen  # kept
    # oneDNN capped to another instruction set is another machine: asked again
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    matmul_mode("bfloat16", "cpu")
    assert set(seen) == {"native", "float32"}


def test_backend_uses_the_mode_and_the_run_key_records_it(
    tiny_model: Path, medboard_home: Path
) -> None:
    request = [
        ChoiceRequest("Question: Which nerve innervates the diaphragm?\nAnswer:", (" A", " B"))
    ]
    native = create_backend(str(tiny_model), dtype="bfloat16", matmul="native", compile_mode="off")
    emulated = create_backend(
        str(tiny_model), dtype="bfloat16", matmul="float32", compile_mode="off"
    )
    assert native.identity()["matmul"] == "native"
    assert emulated.identity()["matmul"] == "float32"
    a = native.loglikelihood(request)[0].logprobs
    b = emulated.loglikelihood(request)[0].logprobs
    assert b == pytest.approx(a, abs=0.1)
    base = {
        "task": "t",
        "task_version": "1",
        "protocol": "loglik/1",
        "dataset": "d",
        "split": "test",
        "data_hash": "h",
        "model": "m",
        "model_revision": "r",
        "dtype": "bfloat16",
        "harness_version": "0",
    }
    keys = {RunSpec(**base, matmul=m).key() for m in (None, "native", "float32")}
    assert len(keys) == 3


def test_compiled_arithmetic_is_part_of_the_run_key(tiny_model: Path, medboard_home: Path) -> None:
    compiled = create_backend(str(tiny_model), dtype="bfloat16", compile_mode="on")
    eager = create_backend(str(tiny_model), dtype="bfloat16", compile_mode="off")
    exact = create_backend(str(tiny_model), dtype="float32")  # auto: float32 stays eager
    assert compiled.identity()["compiled"] == kernels.COMPILED_ARITHMETIC
    assert eager.identity()["compiled"] is None
    assert exact.identity()["compiled"] is None
    base = RunSpec(
        task="t",
        task_version="1",
        protocol="loglik/1",
        dataset="d",
        split="test",
        data_hash="h",
        model="m",
        model_revision="r",
        dtype="bfloat16",
        harness_version="0",
    )
    tagged = base.model_copy(update={"compiled": kernels.COMPILED_ARITHMETIC})
    assert tagged.key() != base.key()
    fused = tagged.model_copy(update={"activation": "avx512-1"})
    assert fused.key() not in (tagged.key(), base.key())
    # an eager run's key is the one it had before the field existed
    before = base.model_dump(
        exclude={"model", "adapter", "matmul", "compiled", "attention", "activation", "backend"}
    )
    assert base.key() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()


def test_compile_by_dtype_and_device() -> None:
    assert compile_wanted("bfloat16", "cpu")
    assert compile_wanted("float16", "cpu")
    assert not compile_wanted("float32", "cpu")  # the exactness path stays eager
    assert not compile_wanted("bfloat16", "cuda:0")
    assert compile_wanted("float32", "cpu", "on")
    assert not compile_wanted("bfloat16", "cpu", "off")
    with pytest.raises(ModelError, match="unknown compile mode 'fast'"):
        compile_wanted("bfloat16", "cpu", "fast")


def test_without_a_cpp_compiler_auto_stays_eager_and_on_says_why(
    tiny_model: Path, medboard_home: Path, inductor_cache: Path, inductor_settings: Settings
) -> None:
    inductor_settings({"cpp.cxx": (str(medboard_home / "no-such-g++"),), "cpp.vec_isa_ok": None})
    assert kernels.cpp_compiler() is None
    assert not compile_wanted("bfloat16", "cpu")
    assert not compile_wanted("bfloat16", "cpu", "off")
    with pytest.raises(ModelError, match=r"needs a C\+\+ compiler .* --compile off"):
        compile_wanted("bfloat16", "cpu", "on")
    assert not kernels.trust_checked_vec_isa()  # nothing to check, nothing stored
    assert not (medboard_home / "verdicts.json").exists()
    assert not (inductor_cache / kernels.ISA_VERDICTS).exists()
    backend = create_backend(str(tiny_model), dtype="bfloat16")
    assert backend.identity()["compiled"] is None  # the run key says: eager layers
    request = ChoiceRequest("Question: Which nerve?\nAnswer:", (" A", " B"))
    assert len(backend.loglikelihood([request])[0].logprobs) == 2


def test_compiled_layers_score_as_eager_ones_and_generation_stays_eager(
    tiny_model: Path, medboard_home: Path
) -> None:
    requests = [
        ChoiceRequest("Question: Which nerve innervates the diaphragm?\nAnswer:", (" A", " B")),
        ChoiceRequest("Question: Where is the liver?\nAnswer:", (" right upper", " left")),
    ]
    eager = create_backend(str(tiny_model), compile_mode="off")
    compiled = create_backend(str(tiny_model), compile_mode="on")
    expected = eager.loglikelihood(requests)
    got = compiled.loglikelihood(requests)
    for e, g in zip(expected, got, strict=True):
        assert g.logprobs == pytest.approx(e.logprobs, rel=1e-6, abs=1e-4)
        assert g.greedy == e.greedy
    layers = decoder_layers(compiled.model)
    assert len(layers) == compiled.model.config.num_hidden_layers
    assert all("forward" not in vars(layer) for layer in layers)  # eager again after scoring
    prompt = GenerateRequest("Question: Where is the liver?\nAnswer:", max_new_tokens=4)
    assert compiled.generate([prompt]) == eager.generate([prompt])


def test_float32_products_in_compiled_layers_compile_once(
    tiny_model: Path, medboard_home: Path
) -> None:
    """The bfloat16 path of a CPU without AMX (float32 products, compiled layers): batches of
    new shapes reuse the dynamic graph. The shared-conversion cache, traced, was guarded on and
    recompiled the layers at every batch shape (0.7 questions/s on Gemma-3-270M)."""
    from torch._dynamo.utils import counters

    backend = create_backend(
        str(tiny_model), dtype="bfloat16", matmul="float32", compile_mode="on", batch_tokens=1
    )
    contexts = ["Question: Where?\nAnswer:", "Question: " + "Which nerve? " * 6 + "\nAnswer:"]
    contexts += ["Question: " + "Which organ lies below the diaphragm? " * 4 + "\nAnswer:"]
    requests = [ChoiceRequest(c, (" A", " B", " C")) for c in contexts]
    backend.loglikelihood(requests[:1])  # compiles what any batch needs
    counters.clear()
    backend.loglikelihood(requests[1:])  # two more batches, of other shapes
    assert counters["stats"]["unique_graphs"] == 0


def test_compiled_layers_are_traced_once(tiny_model: Path) -> None:
    """A decoder layer's Python floats (norm epsilon, attention scaling) are compiled in as
    constants: dynamo does not trace the layer, fail to make some of them tensors and trace it
    all again (half the compile time of a run with torch's compile cache warm)."""
    import logging

    from torch._dynamo.utils import counters
    from transformers import AutoModelForCausalLM

    torch._dynamo.reset()  # trace anew, not from graphs an earlier test compiled
    counters.clear()
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("torch._dynamo.convert_frame")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with CompiledLayers(model), torch.inference_mode():
            model(input_ids=torch.tensor([[1, 2, 3, 4, 5]]))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert counters["stats"]["unique_graphs"] >= 1  # it was traced
    assert not [m for m in messages if m.startswith("Restarting analysis")]


def test_floats_are_constants_only_while_scoring_llama_style_layers(tiny_model: Path) -> None:
    from transformers import (
        AutoModelForCausalLM,
        Gemma2Config,
        Gemma2ForCausalLM,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
    )

    small = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
    }
    config = torch._dynamo.config
    before = config.specialize_float
    with CompiledLayers(AutoModelForCausalLM.from_pretrained(tiny_model)):
        assert config.specialize_float
    assert config.specialize_float == before
    gemma = Gemma3ForCausalLM(Gemma3TextConfig(**small))
    with CompiledLayers(gemma):  # its epsilons as constants: other buffers, other rounding
        assert not config.specialize_float
    assert config.specialize_float == before
    gemma2 = Gemma2ForCausalLM(Gemma2Config(**small))
    assert not normalizes_queries_or_keys(gemma2)  # norms around the feed-forward block only
    with CompiledLayers(gemma2):
        assert not config.specialize_float


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("size", [2, 64, 128, 256])
def test_rotate_half_is_transformers_rotate_half(dtype: torch.dtype, size: int) -> None:
    from transformers.models.gemma3 import modeling_gemma3
    from transformers.models.llama import modeling_llama

    x = torch.randn((2, 3, 5, size), generator=torch.Generator().manual_seed(size)).to(dtype)
    assert torch.equal(rotate_half(x), modeling_llama.rotate_half(x))
    assert torch.equal(rotate_half(x), modeling_gemma3.rotate_half(x))
    compiled = torch.compile(rotate_half, dynamic=True)
    assert torch.equal(compiled(x), modeling_llama.rotate_half(x))


def test_compiled_layers_read_the_fused_rotate_half_only_while_scoring(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM
    from transformers.models.llama import modeling_llama

    own = modeling_llama.rotate_half
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert rotary_modules(model) == [modeling_llama]
    with CompiledLayers(model):
        assert modeling_llama.rotate_half is rotate_half
    assert modeling_llama.rotate_half is own


def test_models_with_query_and_key_norms_keep_their_rotate_half(tmp_path: Path) -> None:
    """Fused with a q/k norm the rotation would skip the norm's bfloat16 rounding (Gemma-3)."""
    from transformers import AutoModelForCausalLM

    from tests.backends.test_hf_gemma import build_tiny_gemma3

    model = AutoModelForCausalLM.from_pretrained(build_tiny_gemma3(tmp_path))
    assert rotary_modules(model) == []
    with CompiledLayers(model):
        from transformers.models.gemma3 import modeling_gemma3

        assert modeling_gemma3.rotate_half is not rotate_half


def test_a_different_rotate_half_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.models.llama import modeling_llama

    def interleaved(x: torch.Tensor) -> torch.Tensor:  # GPT-J style: pairs, not halves
        return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)

    monkeypatch.setattr(modeling_llama, "rotate_half", interleaved)
    model = modeling_llama.LlamaModel(
        modeling_llama.LlamaConfig(
            hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, vocab_size=32,
        )
    )  # fmt: skip
    assert rotary_modules(model) == []


def test_allocator_setting_applies_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory()


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads Linux's /proc")
def test_freed_memory_is_kept_until_released() -> None:
    if not kernels.keep_freed_memory():
        pytest.skip("not glibc")
    kernels.release_freed_memory()  # free memory earlier tests left would serve the block
    before = _rss()
    block = torch.ones(256 * 2**20 // 4)  # 256 MiB, from the heap (below the mmap threshold)
    del block
    assert _rss() - before > 200 * 2**20  # kept: the next forward pass reuses it
    assert kernels.release_freed_memory()
    assert _rss() - before < 64 * 2**20


x86_with_compiler = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or shutil.which("g++") is None,
    reason="inductor's vector instruction set check: x86 with g++",
)


@pytest.fixture()
def inductor_settings() -> Iterator[Settings]:
    """Sets inductor's settings ({"cpp.cxx": ...}) until the test ends, through torch's own
    config.patch: monkeypatch cannot undo them (pytest 9.2 deletes what it set on an object with
    a __dict__, and torch's config then reports the setting as missing to every later test)."""
    from torch._inductor import config

    patches: list[Any] = []

    def settings(changes: dict[str, Any]) -> None:
        patch = config.patch(changes)
        patch.__enter__()
        patches.append(patch)

    yield settings
    for patch in reversed(patches):
        patch.__exit__(None, None, None)


@pytest.fixture()
def inductor_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty inductor cache folder, where the instruction-set answer is kept."""
    folder = tmp_path / "inductor-cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
    return folder


@pytest.fixture()
def isa_checks(
    inductor_cache: Path, inductor_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[str]]:
    """The instruction sets inductor checks from here on (its per-process answers forgotten)."""
    from torch._inductor import cpu_vec_isa

    inductor_settings({"cpp.vec_isa_ok": None})
    checked: list[str] = []
    real = cpu_vec_isa.VecISA.check_build

    def counted(self: object, code: str) -> bool:
        checked.append(str(self))
        return real(self, code)  # type: ignore[arg-type]

    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", counted)
    forget = cpu_vec_isa.VecISA._VecISA__bool__impl.cache_clear  # type: ignore[attr-defined]
    forget()
    yield checked
    forget()


@x86_with_compiler
def test_the_instruction_set_check_runs_once_per_machine(
    medboard_home: Path,
    inductor_cache: Path,
    isa_checks: list[str],
    inductor_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch._inductor import config, cpu_vec_isa

    assert kernels.trust_checked_vec_isa()
    assert isa_checks  # inductor's own check ran: compiled and loaded a test program
    assert config.cpp.vec_isa_ok is True  # and this process already uses the answer
    chosen = str(cpu_vec_isa.pick_vec_isa())
    # kept beside inductor's cache, not in this medboard home: every home on the machine uses it
    assert (inductor_cache / kernels.ISA_VERDICTS).exists()
    assert not (medboard_home / "verdicts.json").exists()
    # a later process (its settings and answers fresh), with another home, trusts it
    monkeypatch.setenv("MEDBOARD_HOME", str(medboard_home.parent / "another-home"))
    inductor_settings({"cpp.vec_isa_ok": None})
    cpu_vec_isa.VecISA._VecISA__bool__impl.cache_clear()  # type: ignore[attr-defined]
    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    isa_checks.clear()
    assert kernels.trust_checked_vec_isa()
    assert config.cpp.vec_isa_ok is True
    assert str(cpu_vec_isa.pick_vec_isa()) == chosen  # the same set, so the same code
    assert isa_checks == []
    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    # another inductor cache (cleared, or another TORCHINDUCTOR_CACHE_DIR) asks again
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache.parent / "other-cache"))
    inductor_settings({"cpp.vec_isa_ok": None})
    cpu_vec_isa.VecISA._VecISA__bool__impl.cache_clear()  # type: ignore[attr-defined]
    assert kernels.trust_checked_vec_isa()
    assert isa_checks
    cpu_vec_isa.valid_vec_isa_list.cache_clear()


@x86_with_compiler
def test_a_failed_instruction_set_check_keeps_inductor_checking(
    medboard_home: Path, isa_checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch._inductor import config, cpu_vec_isa

    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", lambda self, code: False)
    assert not kernels.trust_checked_vec_isa()
    assert config.cpp.vec_isa_ok is None
    assert not kernels.trust_checked_vec_isa()  # the stored no: still not trusted
    assert config.cpp.vec_isa_ok is None


def test_the_users_instruction_set_setting_is_kept(
    inductor_cache: Path, inductor_settings: Settings
) -> None:
    from torch._inductor import config

    inductor_settings({"cpp.vec_isa_ok": False})
    assert not kernels.trust_checked_vec_isa()
    assert config.cpp.vec_isa_ok is False
    assert not (inductor_cache / kernels.ISA_VERDICTS).exists()
