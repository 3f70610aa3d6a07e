"""Yes-or-no answers that take a process a second to work out and stay the same until what they
depend on changes, kept in a file so that later processes skip the work: in the machine cache
by default (paths.machine_cache: every medboard home on the machine shares them, so a fresh home
does not time the machine again, 5-6 s on the Xeon with AMX); the instruction-set answer, which
is about inductor on this machine, beside inductor's compiled-code cache
(kernels.trust_checked_vec_isa), as every home shares that cache.

Every `medboard eval` asked them again: whether inductor's compiler builds and loads code for
each vector instruction set the CPU reports (a test program compiled and loaded in a child
Python per set: 0.9-1.0 s), whether projecting a model's hidden states gives its own logits and
whether its last decoder layer splits (eager forward passes: 0.3-0.4 s each on SmolLM2-135M).
Each answer is stored under a digest of everything it depends on, so a change to any of them (a
torch or transformers upgrade, other weights, medboard's backend code) asks again.
"""

import hashlib
import json
import platform
import sys
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from medboard.paths import machine_cache, read_json_object, write_json_object

FILE_NAME = "verdicts.json"


def remembered(
    question: str,
    depends: Mapping[str, Any],
    work: Callable[[], bool],
    path: Path | None = None,
) -> bool:
    """The answer to `question` given `depends` (JSON-able): stored in `path` (default
    `$MEDBOARD_HOME/verdicts.json`), or worked out and stored there."""
    return bool(_remember(question, depends, lambda: bool(work()), path, bool))


def remembered_choice(
    question: str, depends: Mapping[str, Any], work: Callable[[], str], path: Path | None = None
) -> str:
    """As `remembered`, for an answer that is a name (which of several ways is fastest)."""
    return str(_remember(question, depends, work, path, str))


def _remember(
    question: str,
    depends: Mapping[str, Any],
    work: Callable[[], bool | str],
    path: Path | None,
    kind: type,
) -> bool | str:
    text = json.dumps(dict(depends), sort_keys=True, default=str)
    key = f"{question}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"
    path = path or machine_cache() / FILE_NAME
    answer = read_json_object(path).get(key)
    if isinstance(answer, kind):
        return answer
    answer = work()
    answers = read_json_object(path)  # again: another process may have added answers since
    answers[key] = answer
    write_json_object(path, answers)
    return answer


@cache
def backend_code() -> str:
    """A digest of medboard's backend sources (Python and C): what scoring runs besides the
    libraries."""
    digest = hashlib.sha256()
    for file in sorted(Path(__file__).parent.iterdir()):
        if file.suffix in (".py", ".c", ".h"):
            digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def software() -> dict[str, str]:
    """The versions a model check's answer depends on besides the model: Python, torch,
    transformers, medboard's backend code, and the kind of machine."""
    import torch
    import transformers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "medboard_backends": backend_code(),
        "machine": platform.machine(),
    }
