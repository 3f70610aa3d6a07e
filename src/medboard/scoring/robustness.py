"""Robustness to option order: does the model choose an answer, or a letter?

Reads the sample records (samples.jsonl) of one model on a task and on its permuted copies
(medboard.tasks.permute), and says how much of the score survives moving the options.

- Accuracy on the original order, per shift, and the mean over the shifts given.
- Flip rate: the share of questions whose chosen option (its content, traced back through the
  rotation) changes under at least one shift. A model that knows the answer, or is wrong in the
  same way wherever the options stand, flips nothing.
- Letter shares of predictions and of gold answers, pooled over the original and every shift:
  positional bias. With all shifts 1..n-1 each gold answer visits every letter once, so the gold
  shares are uniform and any tilt of the prediction shares is the model's.

The rotation convention is medboard.tasks.permute's: after shift s the option shown at position i
was at position (i - s) mod n. It is restated here (scoring does not import tasks) and checked on
the records: each permuted gold must sit at (original gold + s) mod n.
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Robustness:
    n: int
    accuracy: float  # original option order
    accuracy_by_shift: Mapping[int, float]
    mean_permuted_accuracy: float
    flip_rate: float
    flipped_ids: tuple[str, ...]
    pred_letters: Mapping[str, float]  # share of predictions per letter, all orders pooled
    gold_letters: Mapping[str, float]  # share of gold answers per letter, all orders pooled


def _by_id(records: Sequence[Mapping[str, Any]], what: str) -> dict[str, Mapping[str, Any]]:
    indexed: dict[str, Mapping[str, Any]] = {}
    for record in records:
        key = str(record["id"])
        if key in indexed:
            raise ValueError(f"{what}: duplicate id '{key}'")
        indexed[key] = record
    return indexed


def _shares(counts: Counter[str]) -> Mapping[str, float]:
    total = sum(counts.values())
    return MappingProxyType({letter: counts[letter] / total for letter in sorted(counts)})


def robustness(
    original_records: Sequence[Mapping[str, Any]],
    permuted_records_by_shift: Mapping[int, Sequence[Mapping[str, Any]]],
) -> Robustness:
    """Accuracy, flip rate and letter bias from the original run and its permuted runs."""
    if not original_records:
        raise ValueError("no original records")
    if not permuted_records_by_shift:
        raise ValueError("no permuted records: give at least one shift")
    original = _by_id(original_records, "original records")
    pred_counts: Counter[str] = Counter()
    gold_counts: Counter[str] = Counter()
    for record in original.values():
        pred_counts[record["choices"][record["pred"]]] += 1
        gold_counts[record["choices"][record["gold"]]] += 1

    flipped: set[str] = set()
    accuracy_by_shift: dict[int, float] = {}
    for shift, records in sorted(permuted_records_by_shift.items()):
        permuted = _by_id(records, f"records of shift {shift}")
        if permuted.keys() != original.keys():
            missing = sorted(original.keys() ^ permuted.keys())
            raise ValueError(
                f"records of shift {shift} are not on the original questions "
                f"(ids in one but not the other: {', '.join(missing[:5])})"
            )
        right = 0
        for key, record in permuted.items():
            base = original[key]
            n = len(base["choices"])
            if len(record["choices"]) != n or shift % n == 0:
                raise ValueError(f"question '{key}': shift {shift} of {n} options is no rotation")
            expected_gold = (base["gold"] + shift) % n
            if record["gold"] != expected_gold:
                raise ValueError(
                    f"question '{key}': gold at {record['gold']} under shift {shift}, expected "
                    f"{expected_gold}; are these the records of that shift?"
                )
            right += record["pred"] == record["gold"]
            if (record["pred"] - shift) % n != base["pred"]:
                flipped.add(key)
            pred_counts[record["choices"][record["pred"]]] += 1
            gold_counts[record["choices"][record["gold"]]] += 1
        accuracy_by_shift[shift] = right / len(permuted)

    n_questions = len(original)
    return Robustness(
        n=n_questions,
        accuracy=sum(r["pred"] == r["gold"] for r in original.values()) / n_questions,
        accuracy_by_shift=MappingProxyType(accuracy_by_shift),
        mean_permuted_accuracy=sum(accuracy_by_shift.values()) / len(accuracy_by_shift),
        flip_rate=len(flipped) / n_questions,
        flipped_ids=tuple(key for key in original if key in flipped),
        pred_letters=_shares(pred_counts),
        gold_letters=_shares(gold_counts),
    )
