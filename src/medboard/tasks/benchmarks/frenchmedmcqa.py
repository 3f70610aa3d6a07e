"""FrenchMedMCQA: French pharmacy specialization exams, the single-answer items, 5 options.

lm-eval has no task for it; it is asked as `medqa_4options` asks a multiple-choice exam, with
five options: "Question: ...\\nA. ...\\nE. ...\\nAnswer:", the letters scored.
"""

from medboard.tasks.base import Task, letter_sample
from medboard.tasks.benchmarks.medqa import mcq_reference, render

FRENCHMEDMCQA = Task(
    name="frenchmedmcqa",
    family="frenchmedmcqa",
    version="1",
    dataset="frenchmedmcqa",
    split="test",
    fewshot_split="validation",
    render=render,
    to_sample=letter_sample,
    expected_size=321,
    expected_hash="5810bc51e913a15d98d9bcffa833be1f32c11aeadc8be7c84220fca61a26364d",
    title="FrenchMedMCQA (fr)",
    language="fr",
    license="Apache-2.0 (the repository's badge)",
    attribution="FrenchMedMCQA, Apache-2.0",
    tracks=("multilingual_medical",),
    reference=mcq_reference(),
)

TASKS = (FRENCHMEDMCQA,)
