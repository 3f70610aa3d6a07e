"""The task registry and the suites.

The tasks come from the benchmark modules (medboard.tasks.benchmarks, one module per benchmark,
found without a list). `open_medical` is the Open Medical-LLM Leaderboard's 9 tasks in its
order; `flowertune_medical` is the FlowerTune medical track's 4; `multilingual_medical` and
`extended_medical` are the tasks that name them in their `tracks`, in registry order.
"""

from medboard.tasks import declared
from medboard.tasks.base import Registry, Sample, Task, Track, UnknownTaskError
from medboard.tasks.benchmarks import discover

REGISTRY = Registry()
for _task in discover():
    REGISTRY.add(_task)
# The benchmarks medboard ships (the exams a user registers come after them).
BUILTIN_TASKS = tuple(t.name for t in REGISTRY.tasks())

REGISTRY.add_track(
    Track("open_medical", "Open Medical-LLM"),
    (
        "medqa_4options",
        "medmcqa",
        "pubmedqa",
        *(t.name for t in REGISTRY.tasks() if t.family == "mmlu"),
    ),
)
REGISTRY.add_track(
    Track("flowertune_medical", "FlowerTune medical", protocol="flowertune"),
    ("pubmedqa", "medmcqa", "medqa_4options", "careqa_en"),
)
REGISTRY.add_track(
    Track("multilingual_medical", "Multilingual medical"),
    tuple(t.name for t in REGISTRY.tasks() if "multilingual_medical" in t.tracks),
)
_OPEN = REGISTRY.suite("open_medical")
REGISTRY.add_track(  # the Open Medical-LLM tasks in their order, then the others
    Track("extended_medical", "Extended medical (English)"),
    tuple(
        sorted(
            (t.name for t in REGISTRY.tasks() if "extended_medical" in t.tracks),
            key=lambda name: _OPEN.index(name) if name in _OPEN else len(_OPEN),
        )
    ),
)
for _task, _track in declared.registered(REGISTRY):  # the exams of `medboard exam add`
    REGISTRY.add_task_track(_task, _track)

# The suites that are leaderboard tracks: their runs become ranked entries.
TRACKS = tuple(REGISTRY.tracks())

__all__ = [
    "BUILTIN_TASKS",
    "REGISTRY",
    "TRACKS",
    "Registry",
    "Sample",
    "Task",
    "Track",
    "UnknownTaskError",
]
