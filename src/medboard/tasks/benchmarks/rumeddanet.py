"""RuMedDaNet (RuMedBench): yes/no questions about a Russian medical text.

lm-eval has no task for it; it has PubMedQA's shape (a passage, a question, label words), so it
is asked as lm-eval's `pubmedqa`: "Abstract: {context}\\nQuestion: {question}\\nAnswer:", the
label words scored (" да", " нет").
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from medboard.tasks.base import Sample, Task
from medboard.tasks.benchmarks.pubmedqa import render

LABELS = ("да", "нет")


def to_sample(record: Mapping[str, Any]) -> Sample:
    return Sample(
        id=str(record["id"]),
        question=record["question"],
        options=MappingProxyType({label: label for label in LABELS}),
        choices=LABELS,
        target=LABELS.index(record["answer"]),
        context=record["context"],
    )


RUMEDDANET = Task(
    name="rumeddanet",
    family="rumeddanet",
    version="1",
    dataset="rumeddanet",
    split="test",
    fewshot_split="validation",
    render=render,
    to_sample=to_sample,
    metrics=("acc",),
    not_permutable="its choices are the labels да/нет, not lettered options",
    expected_size=256,
    expected_hash="4345032f34c27b592d5ae4650e9b75b37953d732a67f06b1573f00e046531a82",
    title="RuMedDaNet (ru)",
    language="ru",
    license="CC BY-NC 4.0",
    noncommercial=True,
    tracks=("multilingual_medical",),
    reference=MappingProxyType(
        {
            "include": "pubmedqa/pubmedqa.yaml",  # as lm-eval's pubmedqa, with its label words
            "process_docs": "utils.pubmedqa_docs",
            "doc_to_choice": '["да", "нет"]',
        }
    ),
)

TASKS = (RUMEDDANET,)
