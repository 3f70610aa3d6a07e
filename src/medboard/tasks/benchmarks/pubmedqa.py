"""PubMedQA, PQA-L test split (500), reasoning-required: the abstract without its conclusion."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from medboard.tasks.base import HubSource, Sample, Task

LABELS = ("yes", "no", "maybe")


def to_sample(record: Mapping[str, Any]) -> Sample:
    contexts = record.get("contexts")
    context = "\n".join(contexts) if contexts is not None else record["context"]
    return Sample(
        id=str(record["id"]),
        question=record["question"],
        options=MappingProxyType({label: label for label in LABELS}),
        choices=LABELS,
        target=LABELS.index(record["answer"]),
        context=context,
    )


def render(sample: Sample) -> str:
    # lm_eval/tasks/pubmedqa/preprocess_pubmedqa.py: contexts joined with "\n"
    return f"Abstract: {sample.context}\nQuestion: {sample.question}\nAnswer:"


PUBMEDQA = Task(
    name="pubmedqa",
    family="pubmedqa",
    version="1",
    dataset="pubmedqa",
    split="test",
    fewshot_split="train",
    render=render,
    to_sample=to_sample,
    metrics=("acc",),
    not_permutable=(
        "its choices are the labels yes/no/maybe, not lettered options: moving them would "
        "change the question"
    ),
    expected_size=500,
    title="PubMedQA",
    license="MIT",
    attribution="PubMedQA (Jin et al.), MIT license",
    tracks=("extended_medical",),
    expected_hash="3e75be4b839d4272884b96c1ecde107c9148c537923e9f60ba2eded7487e2249",
    hub=HubSource(
        path="qiaojin/PubMedQA",
        name="pqa_labeled",
        split="train",
        revision="main",
        converter="pubmedqa_hub",
    ),
)

TASKS = (PUBMEDQA,)
