"""Fetch a transformers model from the Hugging Face Hub: only what its evaluation reads, and,
where a size is capped, nothing until its size is known (and count the parameters of
safetensors weights, on the Hub or on disk, from their headers).

A repository often holds its weights more than once (PyTorch `.bin` beside the safetensors,
ONNX, GGUF copies, an `original/` checkpoint): a whole snapshot can be twice the model or more.
medboard loads the files at the top of the repository (config, tokenizer, model card, weights),
so it fetches those, and of the weights the safetensors where there are any. With
`max_parameters` (a public submission's cap: MEDBOARD_PUBLIC_MAX_PARAMS) the parameter count is
read first from the safetensors headers on the Hub (a few kilobytes per file), and a model over
the cap is refused before its weights are downloaded.
"""

import json
import math
import struct
from pathlib import Path

from medboard.errors import (
    HubUnavailableError,
    HubUnreachableError,
    MissingExtraError,
    ModelError,
)

# Weights in other formats than safetensors: skipped when the repository has safetensors.
OTHER_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
# Never read by a transformers causal LM loaded from the repository's top folder.
NEVER = ("*/*", "*.h5", "*.msgpack", "*.onnx", "*.onnx_data", "*.gguf", "*.ot", "*.tflite")


def count_text(parameters: float) -> str:
    """A parameter count as people write it: 44.2K, 135M, 8.03B."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if parameters >= size:
            return f"{parameters / size:.3g}{unit}"
    return f"{parameters:.0f}"


def skipped(files: list[str]) -> list[str]:
    """The patterns of a repository's files (as listed by the Hub) not to download."""
    top_safetensors = any("/" not in name and name.endswith(".safetensors") for name in files)
    return [*NEVER, *(OTHER_WEIGHTS if top_safetensors else ())]


def safetensors_parameters(files: list[Path]) -> int:
    """Parameters in safetensors files, from their JSON headers."""
    total = 0
    for file in files:
        with file.open("rb") as handle:
            try:
                (size,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(size))
            except (struct.error, ValueError):
                raise ModelError(f"{file.name} is not a readable safetensors file") from None
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


# Answers of a Hub that is there but cannot serve now: the same request may work later.
BUSY = (429, 500, 502, 503, 504)


def _unreachable(repo: str, exc: BaseException, online: bool = True) -> HubUnreachableError:
    """The one-line error for a failed Hub request: HubUnavailableError (a TransientError: a
    queued job waits and tries again) when, online, the Hub did not answer or answered that it
    is busy or down, anywhere in the exception's chain (a download wraps its cause); else
    HubUnreachableError (offline without the model in the cache, no such repository, no
    access)."""
    import httpx
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain, at = [], exc
    while online and at is not None and len(chain) < 8:
        chain.append(at)
        at = at.__cause__ or at.__context__
    for cause in chain:
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(cause, httpx.TransportError) or (
            isinstance(cause, HfHubHTTPError) and status in BUSY
        ):
            what = f"{status}" if status else type(cause).__name__
            return HubUnavailableError(
                f"cannot get model {repo} from the Hub now ({what}): the Hub or the network is "
                "down; try again later"
            )
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError)):
        return HubUnreachableError(
            f"cannot get model {repo} from the Hub ({type(exc).__name__}): no such model or "
            "revision, or it is private or gated (a token with access goes in HF_TOKEN)"
        )
    return HubUnreachableError(
        f"cannot get model {repo} from the Hub ({type(exc).__name__}); "
        "pass a local model directory or a .gguf file instead"
    )


def hub_parameters(repo: str, commit: str) -> int:
    """The parameters of a Hub model at `commit`, from its safetensors headers (nothing else
    downloaded)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import NotASafetensorsRepoError

    try:  # an HfApi made now: the module's functions keep the endpoint of their import
        metadata = HfApi().get_safetensors_metadata(repo, revision=commit)
    except NotASafetensorsRepoError:
        raise ModelError(
            f"{repo} has no safetensors weights on the Hub: convert them to safetensors"
        ) from None
    except Exception as exc:  # the hub client raises many types for "offline"
        raise _unreachable(repo, exc) from None
    return sum(metadata.parameter_count.values())


def check_size(repo: str, parameters: int, max_parameters: float | None) -> None:
    if max_parameters is not None and parameters > max_parameters:
        raise ModelError(
            f"{repo} has {count_text(parameters)} parameters, more than the "
            f"{count_text(max_parameters)} allowed here"
        )


def fetch(repo: str, revision: str | None, max_parameters: float | None = None) -> tuple[Path, str]:
    """(the local folder, the commit) of a Hub model, downloaded into the Hub cache (offline:
    found there). A model over `max_parameters` is refused before its weights are fetched."""
    try:
        import huggingface_hub.constants
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        raise MissingExtraError("huggingface_hub", "hf") from None
    if huggingface_hub.constants.HF_HUB_OFFLINE:  # the cache alone: nothing to download
        try:
            local = Path(snapshot_download(repo, revision=revision))
        except Exception as exc:
            raise _unreachable(repo, exc, online=False) from None
        weights = sorted(local.glob("*.safetensors"))
        if max_parameters is not None and weights:
            check_size(repo, safetensors_parameters(weights), max_parameters)
        return local, local.name  # snapshots/<commit>
    try:
        info = HfApi().model_info(repo, revision=revision)
    except Exception as exc:
        raise _unreachable(repo, exc) from None
    commit = str(info.sha)
    if max_parameters is not None:
        check_size(repo, hub_parameters(repo, commit), max_parameters)
    files = [sibling.rfilename for sibling in info.siblings or []]
    try:
        local = snapshot_download(repo, revision=commit, ignore_patterns=skipped(files))
    except Exception as exc:
        raise _unreachable(repo, exc) from None
    return Path(local), commit
