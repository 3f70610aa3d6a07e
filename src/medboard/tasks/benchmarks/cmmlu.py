"""The seven medical subjects of CMMLU (Chinese), each a task as lm-eval's `cmmlu_<subject>`.

lm_eval/tasks/cmmlu/_default_template_yaml: the stripped question, the four options, "答案：",
the letters scored (acc and acc_norm, equal for one-letter choices); the subject's description
in Chinese; the dev split's first examples as few-shot (first_n). Together they are the
`cmmlu_medical` benchmark: one column on the multilingual track, the size-weighted mean of the
subjects (lm-eval's group aggregate).
"""

from medboard.tasks.base import Sample, Task, letter_sample

# subject -> (its name in the description, questions, content hash of its test records)
SUBJECTS = {
    "anatomy": (
        "解剖学",
        148,
        "31494e9540411f2ac8f03c5a720f68e5182c36e8941c6f45c6eef6fbdb6e83a7",
    ),
    "clinical_knowledge": (
        "临床知识",
        237,
        "e5cf75dd9e9bdd1685a58fdfec7743419d6c22e8f37db7fc8dd3e87ac5ec9857",
    ),
    "college_medicine": (
        "大学医学",
        273,
        "0439b0ef1ce5e4c2c321c59f0cfae25931518ae013f0b6b18b8bfb62b2932e8b",
    ),
    "genetics": (
        "遗传学",
        176,
        "5521dc4a4f049bb3743d8aad34078e2fa9c1a194dc661be1c6408b45c2efca2a",
    ),
    "nutrition": (
        "营养学",
        145,
        "264bfe66874291ab0f158e2c98b19ecf2fd92f85aea31bbd17396a5a94e4ddcc",
    ),
    "traditional_chinese_medicine": (
        "中医中药",
        185,
        "cc1646574cd19b01a4ae77b4a069ecdad97cf6c4c15d2d0d548f70453b39ec4d",
    ),
    "virology": (
        "病毒学",
        169,
        "e312e356b1492f5c8add2b7122ce9ed4628814c84d9c83abfdee7904b72074cc",
    ),
}
LICENSE = "CC BY-NC-SA 4.0"


def render(sample: Sample) -> str:
    options = sample.options
    return (
        f"{sample.question.strip()}\nA. {options['A']}\nB. {options['B']}\n"
        f"C. {options['C']}\nD. {options['D']}\n答案："
    )


def cmmlu_task(subject: str) -> Task:
    name, size, digest = SUBJECTS[subject]
    return Task(
        name=f"cmmlu_{subject}",
        family="cmmlu",
        version="1",
        dataset="cmmlu_medical",
        split="test",
        subject=subject,
        fewshot_split="dev",
        fewshot_sampler="first_n",
        render=render,
        to_sample=letter_sample,
        description=f"以下是关于{name}的单项选择题，请直接给出正确答案的选项。\n\n",
        expected_size=size,
        expected_hash=digest,
        title=f"CMMLU {subject.replace('_', ' ')}",
        language="zh",
        license=LICENSE,
        noncommercial=True,
        tracks=("multilingual_medical",),
        group="cmmlu_medical",
        group_title="CMMLU medical (zh)",
    )


TASKS = tuple(cmmlu_task(subject) for subject in SUBJECTS)
