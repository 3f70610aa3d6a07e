import math

import pytest

from medboard.scoring.uncertainty import (
    Interval,
    average_ci,
    bootstrap_ci,
    mcnemar,
    normal_interval,
    paired_bootstrap,
    rank_intervals,
    wilson_interval,
)


def test_bootstrap_interval_matches_the_enumerated_bootstrap_distribution() -> None:
    # Resampling [0, 0, 1] gives mean k/3 with k ~ Binomial(3, 1/3):
    # P(0) = 8/27 = .296, P(1/3) = 12/27, P(2/3) = 6/27, P(1) = 1/27 = .037.
    # 5% quantile: 0 (P(0) > .05); 95%: 2/3 (P(<= 2/3) = 26/27 = .963 > .95);
    # 97.5%: 1 (.963 < .975). Each margin is > 9 standard errors at 20000 resamples.
    values = [0.0, 0.0, 1.0]
    ci90 = bootstrap_ci(values, n_resamples=20000, level=0.90)
    assert (ci90.low, ci90.high) == pytest.approx((0.0, 2 / 3))
    assert ci90.point == pytest.approx(1 / 3)
    ci95 = bootstrap_ci(values, n_resamples=20000, level=0.95)
    assert (ci95.low, ci95.high) == pytest.approx((0.0, 1.0))


def test_bootstrap_is_deterministic_under_a_seed() -> None:
    values = [float(i % 3 == 0) for i in range(50)]
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_constant_values_have_a_point_interval() -> None:
    assert bootstrap_ci([1.0] * 10) == Interval(1.0, 1.0, 1.0)


def test_wilson_by_hand() -> None:
    # 0 of 10: upper bound z^2 / (n + z^2) = 3.8415 / 13.8415
    interval = wilson_interval(0, 10)
    assert interval.low == 0.0
    assert interval.high == pytest.approx(0.2775328, abs=1e-6)
    assert wilson_interval(10, 10).high == 1.0
    # 300 of 400: center (p + z^2/2n) / (1 + z^2/n) = .747622, half-width .042299
    interval = wilson_interval(300, 400)
    assert (interval.low, interval.high) == pytest.approx((0.705323, 0.789921), abs=1e-5)


def test_bootstrap_agrees_with_analytic_intervals_for_large_n() -> None:
    values = [1.0] * 300 + [0.0] * 100
    boot = bootstrap_ci(values, n_resamples=4000)
    normal = normal_interval(values)
    # normal: .75 +- 1.96 * sqrt(.75 * .25 / 399 * 400 / 400) ~ .75 +- .0425
    assert normal.high - normal.point == pytest.approx(0.04248, abs=1e-4)
    assert boot.low == pytest.approx(normal.low, abs=0.006)
    assert boot.high == pytest.approx(normal.high, abs=0.006)


def test_average_ci_of_task_means_by_hand() -> None:
    # (1 + k/3) / 2 with k ~ Binomial(3, 1/3): the 90% interval is (1/2, 5/6), point 2/3.
    per_task = {"always": [1.0, 1.0, 1.0], "third": [0.0, 0.0, 1.0]}
    interval = average_ci(per_task, n_resamples=20000, level=0.90)
    assert (interval.low, interval.high, interval.point) == pytest.approx((0.5, 5 / 6, 2 / 3))


def test_average_ci_resamples_each_task_the_same_way_whatever_the_order() -> None:
    per_task = {"t1": [float(i % 2) for i in range(30)], "t2": [float(i % 3) for i in range(40)]}
    reversed_order = dict(reversed(list(per_task.items())))
    first, second = average_ci(per_task, seed=3), average_ci(reversed_order, seed=3)
    assert (first.low, first.high) == pytest.approx((second.low, second.high))


def test_paired_bootstrap_sign_interval_and_p_value() -> None:
    a = [1.0] * 80 + [0.0] * 20
    b = [1.0] * 50 + [0.0] * 50
    better = paired_bootstrap(a, b)
    assert better.difference == pytest.approx(0.3) and better.n == 100
    assert 0.0 < better.interval.low < 0.3 < better.interval.high
    assert better.p_value < 0.01
    worse = paired_bootstrap(b, a)
    assert worse.difference == pytest.approx(-0.3)
    assert worse.interval.low == pytest.approx(-better.interval.high)
    assert worse.interval.high == pytest.approx(-better.interval.low)
    same = paired_bootstrap(a, a)
    assert (same.difference, same.interval.low, same.interval.high, same.p_value) == (0, 0, 0, 1)


def test_paired_bootstrap_is_not_significant_on_balanced_disagreement() -> None:
    a = [1.0, 0.0] * 20
    b = [0.0, 1.0] * 20
    result = paired_bootstrap(a, b)
    assert result.difference == 0.0
    assert result.interval.low < 0.0 < result.interval.high
    assert result.p_value == 1.0


def test_with_no_spread_the_p_value_is_the_exact_sign_tests() -> None:
    """Every question differing the same way gave the bootstrap no spread and p = 1/(R+1) =
    0.001 whatever n: two runs of one question, one right and one wrong, read as significant
    (McNemar's exact test: p = 1)."""
    for n, expected in [(1, 1.0), (2, 0.5), (5, 0.0625), (10, 2 / 1024)]:
        a, b = [1.0] * n, [0.0] * n
        assert paired_bootstrap(a, b).p_value == pytest.approx(expected), n
        assert paired_bootstrap(b, a).p_value == pytest.approx(expected), n
        assert mcnemar(a, b).p_value == pytest.approx(expected), n
    three = rank_intervals({"a": {"exam": [1.0] * 3}, "b": {"exam": [0.0] * 3}})
    assert {r.model: r.p_vs_leader for r in three.ranks} == {"a": 1.0, "b": 0.25}
    assert three.indistinguishable == frozenset({"a", "b"})  # 3 questions cannot tell them apart


def test_paired_inputs_must_have_the_same_length() -> None:
    with pytest.raises(ValueError, match="same questions in the same order: got 3 and 2"):
        paired_bootstrap([1.0, 0.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="got 1 and 2"):
        mcnemar([1.0], [1.0, 0.0])


def table(both_right: int, a_only: int, b_only: int, both_wrong: int) -> tuple[list, list]:
    a = [1] * both_right + [1] * a_only + [0] * b_only + [0] * both_wrong
    b = [1] * both_right + [0] * a_only + [1] * b_only + [0] * both_wrong
    return a, b


def test_mcnemar_exact_by_hand() -> None:
    # 12 discordant pairs, 10 vs 2: p = 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * 79/4096
    result = mcnemar(*table(5, 10, 2, 3))
    assert (result.both_right, result.a_only, result.b_only, result.both_wrong) == (5, 10, 2, 3)
    assert result.exact and result.statistic == 2.0
    assert result.p_value == pytest.approx(2 * 79 / 4096)
    assert result.p_value == pytest.approx(0.0386, abs=5e-5)


def test_mcnemar_switches_to_chi_square_at_25_discordant_pairs() -> None:
    assert mcnemar(*table(0, 20, 4, 0)).exact
    # 30 vs 10: (|30 - 10| - 1)^2 / 40 = 9.025, upper chi-square(1) tail 0.0026631
    result = mcnemar(*table(7, 30, 10, 1))
    assert not result.exact
    assert result.statistic == pytest.approx(9.025)
    assert result.p_value == pytest.approx(0.00266312, rel=1e-5)


def test_mcnemar_without_disagreement() -> None:
    result = mcnemar(*table(4, 0, 0, 2))
    assert result.p_value == 1.0 and result.exact
    assert mcnemar(*table(0, 3, 3, 0)).p_value == 1.0


def test_mcnemar_needs_zero_one_values() -> None:
    with pytest.raises(ValueError, match="0/1"):
        mcnemar([0.5, 1.0], [1.0, 1.0])


def clear_winner_and_a_tie() -> dict[str, dict[str, list[float]]]:
    n = 200
    tasks = ("t1", "t2", "t3")
    best = [float(i % 10 != 0) for i in range(n)]  # 90%
    tied1 = [float(i % 5 in (0, 1, 2)) for i in range(n)]  # 60%, other questions than tied2
    tied2 = [float(i % 5 in (2, 3, 4)) for i in range(n)]  # 60%
    return {
        "tied2": dict.fromkeys(tasks, tied2),
        "best": dict.fromkeys(tasks, best),
        "tied1": dict.fromkeys(tasks, tied1),
    }


def test_rank_intervals_with_a_clear_winner_and_a_tie() -> None:
    result = rank_intervals(clear_winner_and_a_tie(), n_resamples=500)
    by_model = {r.model: r for r in result.ranks}
    assert result.leader == "best"
    assert [r.model for r in result.ranks] == ["best", "tied1", "tied2"]
    assert (by_model["best"].rank, by_model["best"].low, by_model["best"].high) == (1, 1, 1)
    for name in ("tied1", "tied2"):
        model = by_model[name]
        assert model.average == pytest.approx(0.6)
        assert (model.rank, model.low, model.high) == (2, 2, 3)
        assert model.p_vs_leader < 0.05
    assert by_model["best"].p_vs_leader == 1.0
    assert result.indistinguishable == frozenset({"best"})


def test_models_tied_at_the_top_are_indistinguishable_from_the_leader() -> None:
    models = clear_winner_and_a_tie()
    del models["best"]
    result = rank_intervals(models, n_resamples=500)
    assert result.leader == "tied1"  # equal averages: first by name
    assert [(r.rank, r.low, r.high) for r in result.ranks] == [(1, 1, 2), (1, 1, 2)]
    assert result.indistinguishable == frozenset({"tied1", "tied2"})


def test_rank_intervals_are_deterministic() -> None:
    models = clear_winner_and_a_tie()
    assert rank_intervals(models, n_resamples=200, seed=1) == rank_intervals(
        models, n_resamples=200, seed=1
    )


def test_rank_intervals_need_the_same_items() -> None:
    models = {"a": {"t": [1.0, 0.0]}, "b": {"t": [1.0]}}
    with pytest.raises(ValueError, match="task 't'.*same items"):
        rank_intervals(models)
    with pytest.raises(ValueError, match="model 'b' has tasks"):
        rank_intervals({"a": {"t": [1.0]}, "b": {"u": [1.0]}})


def test_level_is_checked() -> None:
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0], level=95)
    assert math.isnan(normal_interval([1.0]).low)
