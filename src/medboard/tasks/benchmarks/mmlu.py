"""The six medical subjects of MMLU, each a task (lm-eval `mmlu_<subject>`, default template)."""

from medboard.tasks.base import HubSource, Sample, Task, letter_sample

# Content hashes of each subject's test records (medboard.data.records.content_hash).
MMLU_HASHES = {
    "anatomy": "ce737bc35ac456db52ba6b6b7c955de2be9876127758472f8eb294573c79bfc3",
    "clinical_knowledge": "9ae8caaa28400debd19e2501fb0924ea3132a9f9a57a25b4b1e88aada5722c35",
    "college_biology": "1ee591ea61bc1a6409928b53af9a1fba38fa100c7c672f1cbe2254afd001816e",
    "college_medicine": "3380e13f2856361e018e13e1258ceeb4d7376b4d63867971fde90969e7bc952d",
    "medical_genetics": "dcd01bb41ab959153c1dc3b3228a37957bf911ffea9270bc2b3956f1191d570e",
    "professional_medicine": "7cff8f49c64dccbd488c7c4074e9b5123c52b43afd7783a1bd19e6c1d54c31d5",
}

SUBJECTS = {
    "anatomy": 135,
    "clinical_knowledge": 265,
    "college_biology": 144,
    "college_medicine": 173,
    "medical_genetics": 100,
    "professional_medicine": 272,
}


def render(sample: Sample) -> str:
    # lm_eval/tasks/mmlu/default/_default_template_yaml: the question is stripped
    options = sample.options
    return (
        f"{sample.question.strip()}\nA. {options['A']}\nB. {options['B']}\n"
        f"C. {options['C']}\nD. {options['D']}\nAnswer:"
    )


def description(subject: str) -> str:
    return (
        "The following are multiple choice questions (with answers) about "
        f"{subject.replace('_', ' ')}.\n\n"
    )


def mmlu_task(subject: str) -> Task:
    return Task(
        name=f"mmlu_{subject}",
        family="mmlu",
        version="1",
        dataset="mmlu_medical",
        split="test",
        subject=subject,
        fewshot_split="dev",
        fewshot_sampler="first_n",
        render=render,
        to_sample=letter_sample,
        description=description(subject),
        metrics=("acc",),
        expected_size=SUBJECTS[subject],
        title=subject.replace("_", " ").capitalize(),
        license="MIT",
        attribution="MMLU (Hendrycks et al.), MIT license",
        tracks=("extended_medical",),
        expected_hash=MMLU_HASHES[subject],
        hub=HubSource(
            path="cais/mmlu",
            name=subject,
            split="test",
            # pinned as inspect-evals pins it
            revision="c30699e8356da336a370243923dbaf21066bb9fe",
            converter="mmlu_hub",
        ),
    )


MMLU_TASKS = tuple(mmlu_task(subject) for subject in SUBJECTS)
TASKS = MMLU_TASKS
