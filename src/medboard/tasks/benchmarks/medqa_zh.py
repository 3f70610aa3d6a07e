"""MedQA Mainland China (MCMLE), 4 options, simplified Chinese.

lm-eval has no task for it; it asks it as `medqa_4options` (the same benchmark's English exam):
"Question: ...\\nA. ...\\nAnswer:", the letters scored. lm-eval keeps English frames on
translated or native-language variants of a task (headqa_es).
"""

from types import MappingProxyType

from medboard.tasks.base import Task, letter_sample
from medboard.tasks.benchmarks.medqa import render

MEDQA_ZH = Task(
    name="medqa_zh",
    family="medqa",
    version="1",
    dataset="medqa_zh",
    split="test",
    render=render,
    to_sample=letter_sample,
    expected_size=3426,
    expected_hash="023c9d566ac6ca412163ad3a260b1ea659f45e6207ece9e8e9c33caad2a78007",
    title="MedQA (zh)",
    language="zh",
    license="MIT",
    attribution="MedQA (Jin et al.), MIT license",
    tracks=("multilingual_medical",),
    reference=MappingProxyType(
        {"include": "medqa/medqa.yaml", "process_docs": "utils.medqa_docs"}  # medqa_4options
    ),
)

TASKS = (MEDQA_ZH,)
