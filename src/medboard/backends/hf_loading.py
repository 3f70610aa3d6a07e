"""Find, check and load a transformers causal LM: local directory, GGUF file or Hub id.

A GGUF file is dequantized once and cached as safetensors (transformers takes seconds to a minute
to dequantize); a PEFT adapter is merged into its base model.
"""

import hashlib
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medboard.backends.hf_hub import fetch
from medboard.backends.spec import NAME_MAX, local_kind, overlong_component, user_path
from medboard.errors import MissingExtraError, ModelError
from medboard.paths import machine_cache, read_json_object, write_json_object

DTYPES = ("float32", "bfloat16", "float16")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+", re.ASCII)
HUB_ID_MAX = 96  # huggingface_hub refuses longer repository ids
_IMPORTING = threading.Lock()
# transformers builds a model under torch's default dtype, which it sets for the whole process
# while it does (torch.set_default_dtype): two threads loading at once (`medboard serve
# --workers 2`) built one model in the other's dtype, a bfloat16 model in float32. One load
# (or GGUF dequantization) at a time in a process.
_LOADING = threading.Lock()


def import_transformers() -> None:
    """Import transformers, one thread at a time.

    Its package is a lazy module that is in sys.modules before it is initialized, and Python
    does not make a second thread wait for it as it does for other modules: a thread importing
    from it while another is still importing it gets "cannot import name 'AutoConfig' from
    'transformers'". On a freshly started `medboard serve`, 7 of 8 concurrent submissions of one
    model failed so, with HTTP 500 instead of 409. Every function here that imports from
    transformers calls this first; once imported, it is a lookup under an uncontended lock.
    """
    with _IMPORTING:
        import transformers  # noqa: F401


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["dir", "gguf", "hub"]
    location: str  # directory, .gguf file or Hub id
    revision: str | None = None


def resolve_source(spec: str, revision: str | None = None) -> ModelSource:
    """What `--model` names; fails with one line when it names nothing usable. A name the
    file system cannot look up (too long, a NUL byte) names no local path (spec.local_kind)."""
    path = user_path(spec)
    kind = local_kind(path)
    if path.suffix == ".gguf":
        if kind != "file":
            raise ModelError(f"model file {spec} does not exist{_why_missing(spec)}")
        return ModelSource("gguf", str(path.resolve()))
    if kind == "dir":
        if local_kind(path / "config.json") == "file":
            return ModelSource("dir", str(path.resolve()))
        try:
            ggufs = sorted(path.glob("*.gguf"))
        except OSError as exc:
            raise ModelError(f"cannot read model directory {spec}: {exc.strerror}") from None
        if len(ggufs) == 1:
            return ModelSource("gguf", str(ggufs[0].resolve()))
        if len(ggufs) > 1:
            names = ", ".join(g.name for g in ggufs)
            raise ModelError(f"{spec} holds several GGUF files ({names}): name one")
        raise ModelError(f"{spec} is not a model directory (no config.json and no .gguf file)")
    if kind is not None:
        raise ModelError(f"{spec} is not a model: give a model directory, a .gguf file or a Hub id")
    if is_hub_id(spec):
        return ModelSource("hub", spec, revision)
    raise ModelError(f"model path {spec} does not exist{_why_missing(spec)}")


def is_hub_id(spec: str) -> bool:
    """Whether `spec` can be a Hub model id (`org/name`, at most 96 characters, as the Hub
    allows)."""
    return (
        len(spec) <= HUB_ID_MAX
        and _HUB_ID.fullmatch(spec) is not None
        and not spec.startswith((".", "/", "~"))
    )


def _why_missing(spec: str) -> str:
    if overlong_component(spec):
        return f" (a path component is longer than {NAME_MAX} bytes)"
    if "\0" in spec:
        return " (it holds a NUL character)"
    return ""


def _hash_file(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) so big weights are read once."""
    stat = path.stat()
    cache_path = machine_cache() / "hash-cache.json"
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = read_json_object(cache_path)
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    cache[key] = digest.hexdigest()
    write_json_object(cache_path, cache)
    return cache[key]


def hash_dir(path: Path) -> str:
    """A hash of every file of a model or adapter directory that can change its numbers."""
    digest = hashlib.sha256()
    try:
        for file in sorted(p for p in path.iterdir() if p.is_file() and p.suffix != ".md"):
            digest.update(f"{file.name}:{_hash_file(file)}\n".encode())
    except OSError as exc:  # a folder or weight file that may not be read
        raise ModelError(f"cannot read {exc.filename or path}: {exc.strerror}") from None
    return digest.hexdigest()


def source_revision(
    source: ModelSource, max_parameters: float | None = None
) -> tuple[ModelSource, str]:
    """The exact revision: a content hash for local files, the commit for a Hub model.

    A Hub model is downloaded here (hf_hub.fetch: what loading reads, and nothing of a model
    over `max_parameters`), so it becomes a local directory.
    """
    if source.kind == "gguf":
        try:
            return source, "sha256:" + _hash_file(Path(source.location))
        except OSError as exc:  # a file that may not be read
            raise ModelError(f"cannot read {source.location}: {exc.strerror}") from None
    if source.kind == "dir":
        return source, "sha256:" + hash_dir(Path(source.location))
    local, commit = fetch(source.location, source.revision, max_parameters)
    return ModelSource("dir", str(local), commit), commit


def gguf_architecture(path: Path) -> str:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except Exception as exc:
        raise ModelError(f"{path} is not a readable GGUF file ({exc})") from None


def gguf_to_dir(path: Path, digest: str) -> Path:
    """Dequantize a GGUF file once into a safetensors directory in the machine cache, which
    every medboard home on the machine shares (SmolLM2-135M: 21 s and 517 MB, once)."""
    target = machine_cache() / "models" / f"gguf-{digest[7:23]}"
    if (target / "config.json").is_file():
        return target
    with _LOADING:  # a thread that waited here finds the directory made
        if not (target / "config.json").is_file():
            _dequantize(path, digest, target)
    return target


def _dequantize(path: Path, digest: str, target: Path) -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise MissingExtraError("gguf", "hf") from None
    import_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    arch = gguf_architecture(path)
    if arch not in GGUF_CONFIG_MAPPING:
        supported = ", ".join(sorted(GGUF_CONFIG_MAPPING))
        raise ModelError(
            f"GGUF file {path.name} has architecture '{arch}', which transformers cannot load "
            f"(supported: {supported})"
        )
    import torch

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
    except Exception as exc:
        raise ModelError(f"cannot load GGUF file {path}: {_first_line(exc)}") from None
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # The weights are dequantized already; without this, transformers refuses to save a model
    # "quantized with gguf" and would record a quantization config that no longer applies.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "medboard-source.json").write_text(
        json.dumps({"gguf_file": str(path), "revision": digest}) + "\n"
    )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_causal_lm(directory: Path, label: str) -> Any:
    """The model's config, if it is a causal LM that loads without remote code."""
    import_transformers()
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    auto_map = read_json_object(directory / "config.json").get("auto_map")
    if auto_map:
        refs = [r for v in auto_map.values() for r in (v if isinstance(v, list) else [v]) if r]
        code = sorted({str(ref).split("--")[-1].split(".")[0] for ref in refs})
        raise ModelError(
            f"{label} needs remote code ({', '.join(f'{c}.py' for c in code)} named by auto_map "
            "in config.json): medboard never runs code shipped with a model"
        )
    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
    except Exception as exc:
        raise ModelError(f"cannot read the config of {label}: {_first_line(exc)}") from None
    causal_classes: set[str] = set()
    for names in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        causal_classes.update([names] if isinstance(names, str) else names)
    if config.architectures:
        # the saved head decides: a BertModel is not a causal LM though BertLMHeadModel is
        is_causal = any(name in causal_classes for name in config.architectures)
    else:
        is_causal = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if not is_causal or getattr(config, "is_encoder_decoder", False):
        raise ModelError(
            f"{label} is not a causal language model (model type '{config.model_type}', "
            f"architectures {config.architectures}); medboard scores causal LMs"
        )
    return config


def load_model(
    directory: Path, label: str, dtype: str, device: str, adapter: str | None
) -> tuple[Any, Any]:
    """(model, tokenizer), the adapter merged, in eval mode on the device."""
    import torch

    import_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype '{dtype}' (choose from {', '.join(DTYPES)})")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device '{device}' asked for, but CUDA is not available here")
    check_causal_lm(directory, label)
    with _LOADING:
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                directory, dtype=getattr(torch, dtype), trust_remote_code=False
            )
        except Exception as exc:
            raise ModelError(f"cannot load model {label}: {_first_line(exc)}") from None
        if adapter is not None:
            model = merge_adapter(model, adapter, label)
    loaded = model.get_input_embeddings().weight.dtype
    if loaded != getattr(torch, dtype):  # what the lock above prevents: never scored unnoticed
        raise ModelError(f"model {label} loaded in {loaded}, not the {dtype} asked for")
    model.to(device)
    model.eval()
    return model, tokenizer


def check_adapter(adapter: str) -> Path:
    path = user_path(adapter)
    if local_kind(path / "adapter_config.json") != "file":
        raise ModelError(
            f"adapter {adapter} is not a PEFT adapter directory (no adapter_config.json)"
        )
    return path


def merge_adapter(model: Any, adapter: str, label: str) -> Any:
    try:
        from peft import PeftModel
    except ImportError:
        raise MissingExtraError("peft", "hf") from None
    path = check_adapter(adapter)
    try:
        merged = PeftModel.from_pretrained(model, path).merge_and_unload()
    except Exception as exc:
        raise ModelError(
            f"adapter {adapter} does not fit base model {label}: {_first_line(exc)}"
        ) from None
    return merged
