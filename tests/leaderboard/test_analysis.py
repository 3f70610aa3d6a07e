"""Entry analyses and board rank intervals, on records whose answers are known."""

import math

import pytest

from medboard.leaderboard.analysis import board_rank_intervals, entry_analysis, split_shift


def _records(correct: list[int], n_choices: int = 4, shift: int = 0, prefix: str = "q") -> list:
    """Letter-choice records; a right answer puts most probability on the gold choice."""
    records = []
    for i, ok in enumerate(correct):
        gold = (i + shift) % n_choices
        pred = gold if ok else (gold + 1) % n_choices
        logprobs = [-3.0] * n_choices
        logprobs[pred] = -0.1
        records.append(
            {
                "id": f"{prefix}{i}",
                "choices": ["A", "B", "C", "D"][:n_choices],
                "logprobs": logprobs,
                "pred": pred,
                "gold": gold,
                "acc": float(ok),
            }
        )
    return records


def test_split_shift() -> None:
    assert split_shift("medqa_4options@shift2") == ("medqa_4options", 2)
    assert split_shift("medqa_4options") == ("medqa_4options", None)
    assert split_shift("odd@shiftx") == ("odd@shiftx", None)


def test_intervals_average_and_calibration() -> None:
    found = entry_analysis(
        {"a": _records([1] * 10), "b": _records([0] * 10)}, track_tasks=("a", "b")
    )
    # every resample of all-right answers is all right: the interval is the point
    assert found["intervals"]["a"] == {"low": 1.0, "high": 1.0, "point": 1.0, "level": 0.95}
    assert found["average"]["point"] == 0.5 and found["average"]["low"] == 0.5
    # confidence exp(-0.1) / (exp(-0.1) + 3 exp(-3)) on every question
    confidence = math.exp(-0.1) / (math.exp(-0.1) + 3 * math.exp(-3.0))
    assert found["calibration"]["a"]["ece"] == pytest.approx(1 - confidence)
    assert found["calibration"]["b"]["ece"] == pytest.approx(confidence)
    assert found["robustness"] == {} and found["unparsed"] == {}


def test_average_needs_every_track_task() -> None:
    found = entry_analysis({"a": _records([1, 0, 1])}, track_tasks=("a", "b"))
    assert found["average"] is None
    assert found["intervals"]["a"]["low"] <= 2 / 3 <= found["intervals"]["a"]["high"]


def test_robustness_of_a_letter_biased_model() -> None:
    # gold answers are A, B, C, D, A, ...; the model always answers A
    n = 8

    def always_a(shift: int) -> list:
        records = _records([0] * n, shift=shift)
        for record in records:
            record["pred"] = 0
            record["acc"] = float(record["gold"] == 0)
        return records

    found = entry_analysis({"t": always_a(0), "t@shift1": always_a(1), "t@shift2": always_a(2)})
    robust = found["robustness"]["t"]
    assert robust["accuracy"] == 0.25  # questions 0 and 4
    assert robust["accuracy_by_shift"] == {"1": 0.25, "2": 0.25}
    assert robust["flip_rate"] == 1.0  # the chosen option changes with every move
    assert robust["pred_letters"] == {"A": 1.0}
    assert "t@shift1" not in found["intervals"]


def test_unparsed_counts_of_generative_records() -> None:
    records = _records([1, 0, 0, 1])
    for record, parsed in zip(records, [True, False, True, True], strict=True):
        record["parsed"] = parsed
        del record["logprobs"]
    found = entry_analysis({"t": records})
    assert found["unparsed"]["t"] == {"n": 4, "unparsed": 1, "share": 0.25}
    assert found["calibration"] == {}


def test_board_rank_intervals() -> None:
    strong = _records([1] * 40)
    weak = _records([1] * 10 + [0] * 30)
    weak_twin = _records([1] * 11 + [0] * 29)
    entries = {
        "strong": {"t": strong},
        "weak": {"t": weak},
        "twin": {"t": weak_twin},
        "published": {"t": []},
        "limited": {"t": strong[:5]},
    }
    found = board_rank_intervals(entries, ("t",), n_resamples=300)
    assert found["leader"] == "strong"
    assert set(found["ranks"]) == {"strong", "weak", "twin"}
    assert found["ranks"]["strong"] == {
        "rank": 1, "low": 1, "high": 1, "average": 1.0, "p_vs_leader": 1.0,
        "indistinguishable": True,
    }  # fmt: skip
    assert not found["ranks"]["weak"]["indistinguishable"]
    assert found["ranks"]["twin"]["low"] == 2 and found["ranks"]["weak"]["high"] == 3
    assert "no per-question records" in found["excluded"]["published"]
    assert "other questions" in found["excluded"]["limited"]


def test_too_few_comparable_entries_give_no_ranks() -> None:
    found = board_rank_intervals({"only": {"t": _records([1, 0])}}, ("t",))
    assert found["ranks"] == {} and found["leader"] is None
