"""What a transformers model must pass before it is queued (the hf backend's `validate`).

The config and tokenizer load with the Auto classes without remote code, the architecture is a
causal LM, the weights are safetensors (or a GGUF file given by local path), a Hub model has a
model card that names its license, an adapter is a PEFT directory with safetensors weights. The
parameter count is read from the weight files' headers, without loading the weights.
"""

import re
from pathlib import Path

from medboard.backends.base import ModelInfo
from medboard.backends.hf_hub import safetensors_parameters
from medboard.backends.hf_loading import (
    check_adapter,
    check_causal_lm,
    gguf_architecture,
    hash_dir,
    import_transformers,
    resolve_source,
    source_revision,
)
from medboard.errors import MissingExtraError, ModelError

_LICENSE = re.compile(r"^license:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", re.MULTILINE)


def gguf_parameters(path: Path) -> int:
    from gguf import GGUFReader

    return sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors)


def model_card_license(directory: Path) -> str | None:
    """The `license:` of a model card's YAML front matter."""
    card = directory / "README.md"
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    front = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    match = _LICENSE.search(front)
    return match.group(1).strip() if match else None


def _load_tokenizer(directory: Path, label: str, gguf_file: str | None = None) -> None:
    import_transformers()  # submissions may be checked at once, each in a thread
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(directory, trust_remote_code=False, gguf_file=gguf_file)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the tokenizer of {label} does not load: {first}") from None


def _check_gguf(path: Path, label: str) -> tuple[int, str]:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise MissingExtraError("gguf", "hf") from None
    import_transformers()
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    architecture = gguf_architecture(path)
    if architecture not in GGUF_CONFIG_MAPPING:
        raise ModelError(
            f"GGUF file {path.name} has architecture '{architecture}', which transformers "
            "cannot load"
        )
    _load_tokenizer(path.parent, label, gguf_file=path.name)
    return gguf_parameters(path), architecture


def _check_directory(directory: Path, label: str) -> tuple[int, str, int | None]:
    config = check_causal_lm(directory, label)
    weights = sorted(directory.glob("*.safetensors"))
    if not weights:
        others = sorted(p.name for p in directory.glob("*.bin")) + sorted(
            p.name for p in directory.glob("*.pt")
        )
        found = f" (found {', '.join(others)})" if others else ""
        raise ModelError(f"{label} has no safetensors weights{found}: convert them to safetensors")
    _load_tokenizer(directory, label)
    architecture = (config.architectures or [config.model_type])[0]
    context = getattr(config, "max_position_embeddings", None)
    return safetensors_parameters(weights), architecture, context


def validate_model(
    spec: str, revision: str = "", adapter: str | None = None, max_parameters: float | None = None
) -> ModelInfo:
    """Check a model (and adapter) as a submission; a ModelError says what is wrong."""
    try:
        return _validate(spec, revision, adapter, max_parameters)
    except OSError as exc:  # a weight file or model card that may not be read, say
        where = exc.filename or spec
        raise ModelError(f"cannot read {where}: {exc.strerror or type(exc).__name__}") from None


def _validate(
    spec: str, revision: str, adapter: str | None, max_parameters: float | None
) -> ModelInfo:
    source = resolve_source(spec, revision or None)
    from_hub = source.kind == "hub"
    source, exact_revision = source_revision(source, max_parameters)
    location = Path(source.location)
    context = None
    if source.kind == "gguf":
        if from_hub:
            raise ModelError("a GGUF file is accepted from a local path only")
        parameters, architecture = _check_gguf(location, spec)
    else:
        parameters, architecture, context = _check_directory(location, spec)
    license_name = model_card_license(location if source.kind == "dir" else location.parent)
    if from_hub and not (location / "README.md").is_file():
        raise ModelError(f"{spec} has no model card (README.md): a Hub model needs one")
    if from_hub and license_name is None:
        raise ModelError(f"the model card of {spec} names no license (license: in its header)")
    adapter_hash = ""
    if adapter:
        path = check_adapter(adapter)
        if not any(path.glob("*.safetensors")):
            raise ModelError(f"adapter {adapter} has no safetensors weights")
        adapter_hash = hash_dir(path)  # merged into the base: the parameter count stays
    return ModelInfo(
        kind="hub" if from_hub else source.kind,
        location=str(location),
        revision=exact_revision,
        parameters=parameters,
        architecture=architecture,
        license=license_name,
        adapter_hash=adapter_hash,
        max_context=context if isinstance(context, int) else None,
    )
