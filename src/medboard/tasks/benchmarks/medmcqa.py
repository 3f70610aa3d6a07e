"""MedMCQA (validation split used as test) and CareQA English, which shares its prompt."""

from medboard.tasks.base import HubSource, Sample, Task, letter_sample, option_lines


def render(sample: Sample) -> str:
    # lm_eval/tasks/medmcqa/utils_medmcqa.py and lm_eval/tasks/careqa/utils.py
    return f"Question: {sample.question}\nChoices:\n{option_lines(sample)}Answer:"


MEDMCQA = Task(
    name="medmcqa",
    family="medmcqa",
    version="1",
    dataset="medmcqa",
    split="validation",
    fewshot_split="train",
    render=render,
    to_sample=letter_sample,
    expected_size=4183,
    title="MedMCQA",
    license="MIT",
    attribution="MedMCQA (Pal et al.), MIT license",
    tracks=("extended_medical",),
    expected_hash="87f995787e7c9fc76626f7faf6fe127b807525a4e489e652e5161793301e512a",
    hub=HubSource(
        path="openlifescienceai/medmcqa",
        name=None,
        split="validation",
        revision="main",
        converter="medmcqa_hub",
    ),
)

CAREQA_EN = Task(
    name="careqa_en",
    family="careqa",
    version="1",
    dataset="careqa",
    split="test",
    render=render,
    to_sample=letter_sample,
    metrics=("acc",),
    expected_size=5621,
    title="CareQA",
    license="Apache-2.0",
    attribution="CareQA (HPAI-BSC), Apache-2.0",
    tracks=("extended_medical",),
    expected_hash="eafc789e6fdcd338e9912031a79b640e634f4b73afd8b83c40093e5eba3ffcdb",
    hub=HubSource(
        path="HPAI-BSC/CareQA",
        name="CareQA_en",
        split="test",
        revision="main",
        converter="careqa_hub",
    ),
)

TASKS = (MEDMCQA, CAREQA_EN)
