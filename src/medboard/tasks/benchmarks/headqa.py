"""HEAD-QA, English (a machine translation) and Spanish (the original exams): the option texts are
the scored continuations, so acc_norm differs from acc."""

from medboard.tasks.base import HubSource, Sample, Task, text_sample

ATTRIBUTION = (
    "HEAD-QA (Vilares and Gómez-Rodríguez), MIT license; exams of the Spanish Ministry of "
    "Health, shown unaltered (last updated January 14th, 2019)"
)


def render(sample: Sample) -> str:
    # lm_eval/tasks/headqa/headqa_en.yaml
    return f"Question: {sample.question}\nAnswer:"


HEADQA_EN = Task(
    name="headqa_en",
    family="headqa",
    version="1",
    dataset="headqa",
    split="test",
    fewshot_split="validation",
    render=render,
    to_sample=text_sample,
    expected_size=2742,
    title="HEAD-QA",
    license="MIT (and the Spanish Ministry of Health's reuse conditions)",
    attribution=ATTRIBUTION,
    tracks=("extended_medical",),
    expected_hash="0e196428e9b28e407a2089261bd6643365c177bc55b768d3b0ed022f73d086ee",
    hub=HubSource(
        path="EleutherAI/headqa", name="en", split="test", revision="main", converter="headqa_hub"
    ),
)

# lm_eval/tasks/headqa/headqa_es.yaml: headqa_en's template on the Spanish original (all 2,742
# questions, the 67 that refer to an image included, as lm-eval has them).
HEADQA_ES = Task(
    name="headqa_es",
    family="headqa",
    version="1",
    dataset="headqa_es",
    split="test",
    fewshot_split="validation",
    render=render,
    to_sample=text_sample,
    expected_size=2742,
    expected_hash="d04acbe87c972001ba482e1be9e3d50d4f0f06981819c52ab529ee158042706d",
    title="HEAD-QA (es)",
    language="es",
    license="MIT (and the Spanish Ministry of Health's reuse conditions)",
    attribution=ATTRIBUTION,
    tracks=("multilingual_medical",),
)

TASKS = (HEADQA_EN, HEADQA_ES)
