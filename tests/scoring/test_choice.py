import math

import pytest

from medboard.scoring.choice import argmax, score_choices
from medboard.scoring.metrics import mean, mean_stderr


def test_argmax_ties_go_to_the_first() -> None:
    assert argmax([-1.0, -0.5, -0.5]) == 1
    assert argmax([-2.0, -2.0]) == 0


def test_acc_norm_divides_by_characters_not_bytes() -> None:
    # "γγ" is 2 characters but 4 bytes: per character A wins (-0.6 > -0.8); per byte B would (-0.4).
    logprobs, choices = [-2.4, -1.6], ["abcd", "γγ"]
    score = score_choices(logprobs, choices, target=0)
    assert (score.pred, score.pred_norm) == (1, 0)
    assert (score.acc, score.acc_norm) == (0.0, 1.0)
    per_byte = [lp / len(c.encode()) for lp, c in zip(logprobs, choices, strict=True)]
    assert argmax(per_byte) == 1


def test_acc_and_acc_norm_can_differ() -> None:
    score = score_choices([-4.0, -6.0], ["a", "longer answer"], target=1)
    assert score.acc == 0.0 and score.acc_norm == 1.0


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 log-likelihoods for 3 choices"):
        score_choices([-1.0, -2.0], ["A", "B", "C"], 0)


def test_stderr_by_hand() -> None:
    values = [1.0, 0.0, 1.0, 1.0]
    # mean 0.75, sample variance (3 * 0.0625 + 0.5625) / 3 = 0.25, stderr sqrt(0.25 / 4) = 0.25
    assert mean(values) == 0.75
    assert mean_stderr(values) == pytest.approx(0.25)
    assert math.isnan(mean_stderr([1.0]))


def test_acc_norm_divides_by_characters_not_bytes_in_cjk_and_cyrillic() -> None:
    # lm-eval's acc_norm: log-likelihood / len(choice) in characters. "胸腔中纵隔" is 5 characters
    # (15 bytes in UTF-8), "нет" 3 (6 bytes): by bytes the second choice would win.
    choices = ["胸腔中纵隔", "нет"]
    logprobs = [-5.0, -3.3]  # per character: -1.0 and -1.1; per byte: -0.33 and -0.55
    score = score_choices(logprobs, choices, target=0)
    assert score.pred == 1 and score.pred_norm == 0 and score.acc_norm == 1.0
