import math

import pytest

from medboard.scoring.calibration import (
    brier_score,
    calibration,
    choice_probabilities,
    expected_calibration_error,
    reliability_bins,
    top_label_brier,
)


def test_softmax_of_log_probabilities_gives_them_back() -> None:
    probs = choice_probabilities([math.log(0.5), math.log(0.3), math.log(0.2)])
    assert probs == pytest.approx((0.5, 0.3, 0.2))


def test_softmax_renormalizes_over_the_choices_and_never_overflows() -> None:
    # log-likelihoods of 0.2 and 0.05: renormalized over the two choices, 0.8 and 0.2
    assert choice_probabilities([math.log(0.2), math.log(0.05)]) == pytest.approx((0.8, 0.2))
    assert choice_probabilities([-1000.0, -1000.0]) == pytest.approx((0.5, 0.5))


def test_ece_by_hand() -> None:
    # bin [0.9, 1.0]: 2 questions, confidence .95, accuracy .5 -> |.5 - .95| = .45, weight 2/6
    # bin [0.6, 0.7): 4 questions, confidence .65, accuracy .75 -> .10, weight 4/6
    # ECE = .45 * 2/6 + .10 * 4/6 = .15 + .0667 = .216667
    confidences = [0.95, 0.95, 0.65, 0.65, 0.65, 0.65]
    correct = [True, False, True, True, True, False]
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.15 + 0.4 / 6)


def test_perfect_calibration_has_zero_ece() -> None:
    confidences = [0.75] * 4 + [0.5] * 2
    correct = [1, 1, 1, 0, 1, 0]
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.0)


def test_bins_are_equal_width_left_closed_and_the_last_holds_one() -> None:
    bins = reliability_bins([0.3, 0.35, 1.0, 0.0], [True, False, True, False], n_bins=10)
    assert len(bins) == 10
    assert (bins[3].low, bins[3].high, bins[3].count) == pytest.approx((0.3, 0.4, 2))
    assert bins[3].mean_confidence == pytest.approx(0.325) and bins[3].accuracy == 0.5
    assert (bins[9].count, bins[9].accuracy) == (1, 1.0)
    assert bins[0].count == 1
    assert bins[5].count == 0 and bins[5].mean_confidence is None and bins[5].accuracy is None


def test_brier_by_hand() -> None:
    # (.5-1)^2 + .3^2 + .2^2 = .38 ; .5^2 + .3^2 + (.2-1)^2 = .98 ; mean .68
    probabilities = [(0.5, 0.3, 0.2), (0.5, 0.3, 0.2)]
    assert brier_score(probabilities, [0, 2]) == pytest.approx(0.68)
    assert brier_score([(1.0, 0.0)], [0]) == 0.0
    assert brier_score([(0.0, 1.0)], [0]) == 2.0  # the worst score


def test_top_label_brier_by_hand() -> None:
    # (.5 - 1)^2 and (.9 - 0)^2: mean (.25 + .81) / 2 = .53
    assert top_label_brier([0.5, 0.9], [True, False]) == pytest.approx(0.53)


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="2 confidences for 1 questions"):
        expected_calibration_error([0.5, 0.6], [True])
    with pytest.raises(ValueError, match="gold index 3 outside 2 choices"):
        brier_score([(0.5, 0.5)], [3])


def record(probs: list[float], gold: int) -> dict:
    logprobs = [math.log(p) - 7.0 for p in probs]  # any common shift: softmax removes it
    pred = max(range(len(probs)), key=lambda i: probs[i])
    return {"id": "x", "choices": ["A", "B", "C", "D"][: len(probs)], "logprobs": logprobs,
            "pred": pred, "gold": gold, "acc": float(pred == gold)}  # fmt: skip


def test_calibration_from_sample_records_by_hand() -> None:
    records = [
        record([0.95, 0.03, 0.01, 0.01], 0),  # confident, right
        record([0.95, 0.03, 0.01, 0.01], 1),  # confident, wrong
        record([0.65, 0.15, 0.1, 0.1], 0),
        record([0.1, 0.65, 0.15, 0.1], 1),
        record([0.1, 0.1, 0.65, 0.15], 2),
        record([0.1, 0.1, 0.15, 0.65], 0),
    ]
    result = calibration(records)
    assert result.n == 6
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.mean_confidence == pytest.approx((2 * 0.95 + 4 * 0.65) / 6)
    assert result.ece == pytest.approx(0.15 + 0.4 / 6)
    assert [b.count for b in result.bins] == [0, 0, 0, 0, 0, 0, 4, 0, 0, 2]
    right_95 = 0.05**2 + 0.03**2 + 0.01**2 + 0.01**2
    wrong_95 = 0.95**2 + 0.97**2 + 0.01**2 + 0.01**2
    right_65 = 0.35**2 + 0.15**2 + 0.1**2 + 0.1**2
    wrong_65 = 0.9**2 + 0.1**2 + 0.15**2 + 0.65**2
    expected = (right_95 + wrong_95 + 3 * right_65 + wrong_65) / 6
    assert result.brier == pytest.approx(expected)
    top = (0.05**2 + 0.95**2 + 3 * 0.35**2 + 0.65**2) / 6
    assert result.top_label_brier == pytest.approx(top)


def test_calibration_needs_records() -> None:
    with pytest.raises(ValueError, match="no sample records"):
        calibration([])
