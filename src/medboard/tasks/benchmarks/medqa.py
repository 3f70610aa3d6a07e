"""MedQA-USMLE, 4 options (lm-eval `medqa_4options`)."""

from collections.abc import Mapping
from types import MappingProxyType

from medboard.tasks.base import HubSource, Sample, Task, letter_sample, option_lines


def mcq_reference(process_docs: str = "utils.mcq_docs") -> Mapping[str, str]:
    """How lm-eval asks a multiple-choice exam it has no task for (Task.reference): as
    medqa_4options, over the item's own options (bench/lmeval_tasks/utils.py's mcq_*)."""
    return MappingProxyType(
        {
            "include": "medqa/medqa.yaml",
            "process_docs": process_docs,
            "doc_to_text": "utils.mcq_doc_to_text",
            "doc_to_choice": "utils.mcq_choices",
            "doc_to_target": "label",
        }
    )


def render(sample: Sample) -> str:
    # lm_eval/tasks/medqa/preprocess_medqa.py
    return f"Question: {sample.question}\n{option_lines(sample)}Answer:"


MEDQA_4OPTIONS = Task(
    name="medqa_4options",
    family="medqa",
    version="1",
    dataset="medqa",
    split="test",
    fewshot_split="validation",
    render=render,
    to_sample=letter_sample,
    expected_size=1273,
    title="MedQA",
    license="MIT",
    attribution="MedQA (Jin et al.), MIT license",
    tracks=("extended_medical",),
    expected_hash="98c52eb0f0fa00dce4a8bb6fe226f020c8a61a8b13ec87c80da511cc84e6c2fe",
    hub=HubSource(
        path="GBaker/MedQA-USMLE-4-options",
        name=None,
        split="test",
        revision="main",
        converter="medqa_hub",
    ),
)

TASKS = (MEDQA_4OPTIONS,)
