"""The task registry and the suites.

`open_medical` is the Open Medical-LLM Leaderboard's 9 tasks; `flowertune_medical` is the
FlowerTune medical track's 4.
"""

from medboard.tasks.base import Registry, Sample, Task, UnknownTaskError
from medboard.tasks.headqa import HEADQA_EN
from medboard.tasks.medmcqa import CAREQA_EN, MEDMCQA
from medboard.tasks.medqa import MEDQA_4OPTIONS
from medboard.tasks.mmlu import MMLU_TASKS
from medboard.tasks.pubmedqa import PUBMEDQA

REGISTRY = Registry()
for _task in (MEDQA_4OPTIONS, MEDMCQA, PUBMEDQA, *MMLU_TASKS, CAREQA_EN, HEADQA_EN):
    REGISTRY.add(_task)

REGISTRY.add_suite(
    "open_medical",
    ("medqa_4options", "medmcqa", "pubmedqa", *(t.name for t in MMLU_TASKS)),
)
REGISTRY.add_suite("flowertune_medical", ("pubmedqa", "medmcqa", "medqa_4options", "careqa_en"))

# The suites that are leaderboard tracks: their runs become ranked entries.
TRACKS = ("open_medical", "flowertune_medical")

__all__ = ["REGISTRY", "TRACKS", "Registry", "Sample", "Task", "UnknownTaskError"]
