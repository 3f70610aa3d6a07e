"""Where medboard keeps its files: one home directory, overridable by MEDBOARD_HOME."""

import json
import os
import threading
from pathlib import Path
from typing import Any


def home() -> Path:
    """The medboard home directory (data store, run store, model cache)."""
    return Path(os.environ.get("MEDBOARD_HOME", Path.home() / ".cache" / "medboard"))


def machine_cache() -> Path:
    """What medboard works out or derives once on this machine and every home on it shares: the
    answers of its probes and load-time checks (verdicts.json), its built C kernels (kernels/),
    GGUF models dequantized (models/) and model files' content hashes (hash-cache.json).
    MEDBOARD_MACHINE_CACHE, else ~/.cache/medboard-machine."""
    default = Path.home() / ".cache" / "medboard-machine"
    return Path(os.environ.get("MEDBOARD_MACHINE_CACHE", default))


def shared_benchmarks() -> Path | None:
    """The shared benchmark folder if present: MEDBOARD_BENCHMARKS, else ../shared/benchmarks."""
    env = os.environ.get("MEDBOARD_BENCHMARKS")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = base.parent / "shared" / "benchmarks"
        if candidate.is_dir():
            return candidate
    return None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a file, {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: a temporary file (one per process and thread,
    so two writers never share one), synced, then renamed over `path`; on failure the
    temporary file is removed and `path` is as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of `text` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json_object(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON, whole or not at all (atomic_write_text)."""
    atomic_write_text(path, json.dumps(data))
