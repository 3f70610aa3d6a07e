"""AfriMed-QA, expert multiple-choice questions from across Africa (English).

lm-eval has no task for it; it is asked as `medqa_4options` asks a multiple-choice exam, with
the item's own options (five, some four): "Question: ...\\nA. ...\\nAnswer:", the letters scored.
"""

from medboard.tasks.base import Task, letter_sample
from medboard.tasks.benchmarks.medqa import mcq_reference, render

AFRIMEDQA = Task(
    name="afrimedqa",
    family="afrimedqa",
    version="1",
    dataset="afrimedqa",
    split="test",
    render=render,
    to_sample=letter_sample,
    expected_size=3907,
    expected_hash="b6b14843b1c24c5a5c7258a28acc4585e96bc943c1bb8283c2633de8546c27a4",
    title="AfriMed-QA",
    language="en",
    license="CC BY-NC-SA 4.0",
    noncommercial=True,
    tracks=("multilingual_medical",),
    reference=mcq_reference(),
    not_permutable="8 of its items letter their options from B (B-E), as the source has them",
)

TASKS = (AFRIMEDQA,)
