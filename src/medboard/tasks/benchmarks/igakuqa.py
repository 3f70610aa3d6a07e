"""IgakuQA: the Japanese National Medical Licensing Examination, 2018-2022 (single-answer items).

lm-eval has no task for it; it is asked as `medqa_4options` asks a multiple-choice exam, with
as many options as the item has (five, a few six or eight), the letters scored. `igakuqa` leaves
out the 452 items that refer to an image the data does not include (counted by `medboard
tasks`); `igakuqa_with_images` keeps them.
"""

from collections.abc import Mapping
from typing import Any

from medboard.tasks.base import Task, letter_sample
from medboard.tasks.benchmarks.medqa import mcq_reference, render

LICENSE = "none stated"


def refers_to_an_image(record: Mapping[str, Any]) -> bool:
    return bool(record.get("image"))


IGAKUQA = Task(
    name="igakuqa",
    family="igakuqa",
    version="1",
    dataset="igakuqa",
    split="test",
    render=render,
    to_sample=letter_sample,
    exclude=refers_to_an_image,
    reference=mcq_reference("utils.igakuqa_docs"),
    expected_size=1235,
    expected_hash="dde92de132ca728fbc74b17ae26bce4ed0fb5fb1d2b6984cfc9c0eb85eea9e2f",
    title="IgakuQA (ja)",
    language="ja",
    license=LICENSE,
    noncommercial=True,
    tracks=("multilingual_medical",),
)
IGAKUQA_WITH_IMAGES = Task(
    name="igakuqa_with_images",
    family="igakuqa",
    version="1",
    dataset="igakuqa",
    split="test",
    render=render,
    to_sample=letter_sample,
    expected_size=1687,
    expected_hash="711a729a4167d945951147901aacdaa980f9e8cf40885ad010d7fdb603fef54f",
    title="IgakuQA with image items (ja)",
    reference=mcq_reference(),
    language="ja",
    license=LICENSE,
    noncommercial=True,
)

TASKS = (IGAKUQA, IGAKUQA_WITH_IMAGES)
