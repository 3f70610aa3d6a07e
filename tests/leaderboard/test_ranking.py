"""Ranking as a pure function: order, ties, partial entries, sorting, search and filters."""

import json
import math
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from medboard.errors import MedboardError
from medboard.leaderboard.exchange import import_results
from medboard.leaderboard.published import import_published
from medboard.leaderboard.ranking import (
    MIXED,
    LeaderboardSpec,
    StoredEntry,
    StoredScore,
    UnknownTrackError,
    ViewOptions,
    facet_values,
    interval,
    load_entries,
    mixing_warning,
    on_subset,
    percent_text,
    rank_entries,
    ranking_counts,
    track_spec,
)
from medboard.results.db import Database, Entry, Run, open_database
from medboard.results.record import record_entry
from medboard.results.schema import RunResult, RunSpec, Score
from medboard.tasks import REGISTRY
from tests.conftest import import_fixture_tasks
from tests.leaderboard.test_exchange import lmeval_folder

SPEC = LeaderboardSpec(track="t", title="T", tasks=("a", "b", "c"))


def entry(entry_id: int, model: str, scores: dict[str, float], **fields: object) -> StoredEntry:
    stderr = fields.pop("stderr", None)
    return StoredEntry(
        entry_id=entry_id,
        model=model,
        scores={t: StoredScore(v, stderr) for t, v in scores.items()},  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


ENTRIES = [
    entry(1, "zeta", {"a": 0.5, "b": 0.5, "c": 0.5}, parameters=7_000_000_000, dtype="bfloat16",
          model_type="instruct", origin="published", date="2025-01-01"),
    # mean 0.6 reached by a different float sum than 3 x 0.6: still a tie with entry 3
    entry(2, "Alpha", {"a": 0.7, "b": 0.5, "c": 0.6}, parameters=1_000_000_000, dtype="float16",
          model_type="pretrained", origin="evaluated", team="Lab One", date="2025-03-01"),
    entry(3, "beta", {"a": 0.6, "b": 0.6, "c": 0.6}, parameters=None, dtype="",
          model_type="fine-tuned", origin="imported", base_model="Llama-3-8B"),
    entry(4, "partial", {"a": 0.99, "b": 0.99}, parameters=3_000_000_000, dtype="bfloat16",
          model_type="instruct", origin="published"),
    entry(5, "best", {"a": 0.9, "b": 0.8, "c": 0.7}, parameters=70_000_000_000, dtype="bfloat16",
          model_type="instruct", origin="published", team="Big Lab", date="2024-06-01"),
]  # fmt: skip


def ids(rows: list) -> list[int]:
    return [r.entry_id for r in rows]


def test_rank_by_average_with_shared_ranks_for_ties() -> None:
    rows = rank_entries(ENTRIES, SPEC)
    assert ids(rows) == [5, 2, 3, 1, 4]
    assert [r.rank for r in rows] == [1, 2, 2, 4, None]
    assert rows[0].average == pytest.approx(0.8)
    assert rows[1].average == pytest.approx(0.6) and rows[2].average == pytest.approx(0.6)


def test_partial_entries_are_listed_unranked_with_their_scores() -> None:
    partial = next(r for r in rank_entries(ENTRIES, SPEC) if r.entry_id == 4)
    assert (partial.rank, partial.average, partial.complete) == (None, None, False)
    assert partial.scores == {"a": 0.99, "b": 0.99, "c": None}
    assert partial.missing == ("c",)
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(complete_only=True))) == [5, 2, 3, 1]


def test_sort_by_task_puts_missing_values_last_both_ways() -> None:
    down = rank_entries(ENTRIES, SPEC, ViewOptions(sort="c"))
    assert ids(down) == [5, 2, 3, 1, 4]  # 2 and 3 tie on c: rank order, then entry id
    up = rank_entries(ENTRIES, SPEC, ViewOptions(sort="c", descending=False))
    assert ids(up) == [1, 2, 3, 5, 4]
    # the partial entry has the best a, but it is not ranked: it stays apart, after the others
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(sort="a"))) == [5, 2, 3, 1, 4]


def test_sort_by_text_numbers_and_rank() -> None:
    by_model = rank_entries(ENTRIES, SPEC, ViewOptions(sort="model"))
    assert [r.model for r in by_model] == ["Alpha", "best", "beta", "zeta", "partial"]
    by_params = rank_entries(ENTRIES, SPEC, ViewOptions(sort="parameters"))
    assert ids(by_params) == [5, 1, 2, 3, 4]  # descending by default; unknown size last
    small_first = rank_entries(ENTRIES, SPEC, ViewOptions(sort="parameters", descending=False))
    assert ids(small_first) == [2, 1, 5, 3, 4]
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(sort="rank"))) == [5, 2, 3, 1, 4]
    worst_first = rank_entries(ENTRIES, SPEC, ViewOptions(sort="rank", descending=True))
    assert ids(worst_first) == [1, 2, 3, 5, 4]
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(sort="date"))) == [2, 1, 5, 3, 4]
    by_team = rank_entries(ENTRIES, SPEC, ViewOptions(sort="team"))
    assert ids(by_team) == [5, 2, 3, 1, 4]  # Big Lab, Lab One, then no team in rank order


def test_unknown_sort_column_is_an_error() -> None:
    with pytest.raises(MedboardError, match="cannot sort by 'nope'"):
        rank_entries(ENTRIES, SPEC, ViewOptions(sort="nope"))


def test_search_matches_every_word_in_model_team_or_base_model() -> None:
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(search="ALPHA"))) == [2]
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(search="lab"))) == [5, 2]
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(search="big lab"))) == [5]
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(search="llama-3"))) == [3]
    assert rank_entries(ENTRIES, SPEC, ViewOptions(search="nothing")) == []


def test_filters_keep_the_track_ranks() -> None:
    instruct = rank_entries(ENTRIES, SPEC, ViewOptions(model_types=("instruct",)))
    assert ids(instruct) == [5, 1, 4]
    assert [r.rank for r in instruct] == [1, 4, None]
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(precisions=("unknown",)))) == [3]
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(precisions=("float16", "unknown")))) == [
        2,
        3,
    ]
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(sources=("evaluated", "imported")))) == [
        2,
        3,
    ]


def test_size_range_includes_bounds_and_drops_unknown_sizes() -> None:
    view = ViewOptions(min_params=1e9, max_params=7e9)
    assert ids(rank_entries(ENTRIES, SPEC, view)) == [2, 1, 4]
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(min_params=10e9))) == [5]
    assert 3 not in ids(rank_entries(ENTRIES, SPEC, ViewOptions(max_params=1e12)))


def test_hidden_entries_are_left_out_and_not_ranked() -> None:
    hidden = [*ENTRIES, entry(6, "secret", {"a": 1.0, "b": 1.0, "c": 1.0}, hidden=True)]
    rows = rank_entries(hidden, SPEC)
    assert 6 not in ids(rows) and rows[0].rank == 1 and rows[0].entry_id == 5
    shown = rank_entries(hidden, SPEC, ViewOptions(include_hidden=True))
    assert ids(shown)[:2] == [6, 5] and [r.rank for r in shown][:2] == [1, 2]


def test_intervals_are_1_96_stderr_and_clipped() -> None:
    rows = rank_entries([entry(1, "m", {"a": 0.5, "b": 0.99, "c": 0.01}, stderr=0.1)], SPEC)
    low, high = rows[0].intervals["a"] or (0, 0)
    assert (low, high) == pytest.approx((0.304, 0.696))
    assert rows[0].intervals["b"] == pytest.approx((0.794, 1.0))
    assert rows[0].intervals["c"] == pytest.approx((0.0, 0.206))
    assert interval(0.5, None) is None
    assert rank_entries(ENTRIES, SPEC)[0].intervals["a"] is None  # published: no stderr


def test_track_specs() -> None:
    open_medical = track_spec("open_medical")
    assert len(open_medical.tasks) == 9 and open_medical.tasks[0] == "medqa_4options"
    assert not open_medical.comm_cost
    flowertune = track_spec("flowertune_medical")
    assert flowertune.tasks == ("pubmedqa", "medmcqa", "medqa_4options", "careqa_en")
    assert flowertune.comm_cost
    with pytest.raises(UnknownTrackError, match="no track 'nope'"):
        track_spec("nope")


def test_load_entries_from_the_published_flowertune_table(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    table = tmp_path / "ft.csv"
    table.write_text(
        "rank,team,base_model,comm_cost_gb,average,pubmedqa,medmcqa,medqa,careqa,date\n"
        "2,FL-finetune-JB-DC,Bio-Medical-Llama-3-8B,1.6,63.12,70.40,60.93,65.82,55.36,2025-04-12\n"
        "1,ZeroOne.AI,Llama3.1-Aloe-Beta-8B,2.0,63.57,74.80,55.39,59.31,64.79,2026-01-14\n",
        encoding="utf-8",
    )
    import_published(database, table)
    spec = track_spec("flowertune_medical")
    with database.session() as session:
        entries = load_entries(session, "flowertune_medical")
        assert load_entries(session, "open_medical") == []
    assert len(entries) == 2 and entries[0].scores["medqa_4options"].value == pytest.approx(0.6582)
    rows = rank_entries(entries, spec)
    assert [r.team for r in rows] == ["ZeroOne.AI", "FL-finetune-JB-DC"]
    assert [r.rank for r in rows] == [1, 2]
    assert rows[0].average == pytest.approx(0.6357, abs=1e-4)
    assert rows[0].comm_cost_gb == 2.0 and rows[0].model_type == "federated"
    cheap = rank_entries(entries, spec, ViewOptions(sort="comm_cost_gb"))
    assert [r.comm_cost_gb for r in cheap] == [1.6, 2.0]


# -- comparable entries only: subsets, protocols, published averages, weight types ---------------

FT = track_spec("flowertune_medical")  # pubmedqa 500, medmcqa 4183, medqa 1273, careqa 5621


def ft_entry(
    entry_id: int,
    value: float,
    *,
    n: int | None = None,
    limit: float | None = None,
    **fields: object,
) -> StoredEntry:
    return StoredEntry(
        entry_id=entry_id,
        model=f"m{entry_id}",
        scores={t: StoredScore(value, 0.01, n, limit) for t in FT.tasks},
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_run_cut_short_by_a_limit_is_partial_and_unranked() -> None:
    full = ft_entry(1, 0.5, n=None, protocol="flowertune")  # published: no question counts
    limited = ft_entry(2, 0.9, n=30, limit=30, origin="evaluated", protocol="flowertune")
    rows = rank_entries([full, limited], FT)
    assert ids(rows) == [1, 2]  # the better average, on 30 questions, is not ranked first
    assert [r.rank for r in rows] == [1, None]
    subset = rows[1]
    assert (subset.complete, subset.average, subset.ranking) == (False, None, None)
    assert subset.subset == FT.tasks and subset.missing == ()
    assert subset.partial_text == "partial: 30 questions per task"
    assert subset.to_json()["partial"] == {
        "questions_per_task": 30,
        "tasks": list(FT.tasks),
        "text": "partial: 30 questions per task",
    }
    assert subset.scores["pubmedqa"] == 0.9  # its scores are still shown
    assert ids(rank_entries([full, limited], FT, ViewOptions(complete_only=True))) == [1]
    assert rows[0].to_json()["partial"] is None


def test_which_limits_cut_a_task_short() -> None:
    assert not on_subset("pubmedqa", StoredScore(0.5, n=500))  # no limit asked
    assert on_subset("pubmedqa", StoredScore(0.5, n=30, limit=30))
    assert not on_subset("pubmedqa", StoredScore(0.5, n=500, limit=800))  # above the size
    assert not on_subset("pubmedqa", StoredScore(0.5, n=500, limit=500))  # the whole set
    assert not on_subset("pubmedqa", StoredScore(0.5, n=8, limit=30))  # a smaller copy, whole
    assert on_subset("pubmedqa", StoredScore(0.5, n=50, limit=0.1))  # lm-eval: a fraction
    assert on_subset("pubmedqa", StoredScore(0.5, n=None, limit=30))  # count unknown
    # a limit on one task only: the entry is partial, that task named
    scores = {t: StoredScore(0.6, n=None) for t in FT.tasks}
    scores["careqa_en"] = StoredScore(0.6, n=100, limit=100)
    row = rank_entries([StoredEntry(1, "m", scores, protocol="flowertune")], FT)[0]
    assert row.rank is None and row.subset == ("careqa_en",) and row.questions == 100


PROTOCOL_ENTRIES = [
    ft_entry(1, 0.60, protocol="flowertune"),
    ft_entry(2, 0.50, protocol="flowertune"),
    ft_entry(3, 0.70, protocol="loglik", origin="evaluated"),  # best average, another protocol
    ft_entry(4, 0.55, protocol="generative", origin="evaluated"),
    ft_entry(5, 0.99, n=30, limit=30, protocol="loglik", origin="evaluated"),
]


def test_each_protocol_is_ranked_apart_the_tracks_own_first() -> None:
    rows = rank_entries(PROTOCOL_ENTRIES, FT)
    assert ids(rows) == [1, 2, 4, 3, 5]  # flowertune, then generative, loglik; unranked last
    assert [(r.ranking, r.rank) for r in rows] == [
        ("flowertune", 1), ("flowertune", 2), ("generative", 1), ("loglik", 1), (None, None),
    ]  # fmt: skip
    assert ranking_counts(FT, rows) == {"flowertune": 2, "generative": 1, "loglik": 1}
    assert mixing_warning(rows) is None
    by_model = rank_entries(PROTOCOL_ENTRIES, FT, ViewOptions(sort="model", descending=True))
    assert ids(by_model) == [2, 1, 4, 3, 5]  # sorted within each ranking
    only = rank_entries(PROTOCOL_ENTRIES, FT, ViewOptions(protocols=("loglik",)))
    assert [(r.entry_id, r.rank) for r in only] == [(3, 1), (5, None)]


def test_one_ranking_over_all_protocols_is_asked_for_and_said() -> None:
    rows = rank_entries(PROTOCOL_ENTRIES, FT, ViewOptions(mixed=True))
    assert [(r.entry_id, r.rank) for r in rows] == [(3, 1), (1, 2), (4, 3), (2, 4), (5, None)]
    assert {r.ranking for r in rows} == {MIXED, None}
    warning = mixing_warning(rows) or ""
    assert "mixes evaluation protocols" in warning
    assert "flowertune (2 entries), generative (1 entry), loglik (1 entry)" in warning
    alone = [e for e in PROTOCOL_ENTRIES if e.protocol == "flowertune"]
    assert mixing_warning(rank_entries(alone, FT, ViewOptions(mixed=True))) is None


def test_published_averages_are_shown_as_published_and_differences_flagged() -> None:
    # the task columns average 0.631275 (63.13); the table says 63.12
    scores = {"pubmedqa": 0.7040, "medmcqa": 0.6093, "medqa_4options": 0.6582, "careqa_en": 0.5536}
    stated = StoredEntry(1, "a", {t: StoredScore(v) for t, v in scores.items()},
                         published_average=0.6312, protocol="flowertune")  # fmt: skip
    same = StoredEntry(2, "b", {t: StoredScore(0.5) for t in FT.tasks},
                       published_average=0.5, protocol="flowertune")  # fmt: skip
    above = StoredEntry(3, "c", {t: StoredScore(0.63128) for t in FT.tasks}, protocol="flowertune")
    rows = rank_entries([stated, same, above], FT)
    assert ids(rows) == [3, 1, 2]  # ranked by the averages shown: 63.128, 63.12, 50
    first, second = rows[1], rows[2]
    assert first.average == pytest.approx(0.6312)
    assert first.recomputed_average == pytest.approx(0.631275)
    assert first.to_json()["recomputed_average"] == pytest.approx(0.631275)
    assert second.average == 0.5 and second.recomputed_average is None
    assert rows[0].recomputed_average is None  # no published average: nothing to differ from


def test_weight_type_filter_and_facet() -> None:
    entries = [
        entry(1, "base", {"a": 0.5, "b": 0.5, "c": 0.5}),
        entry(2, "lora", {"a": 0.6, "b": 0.6, "c": 0.6}, weight_type="adapter"),
        entry(3, "merge", {"a": 0.4, "b": 0.4, "c": 0.4}, weight_type="merged"),
    ]
    assert ids(rank_entries(entries, SPEC, ViewOptions(weight_types=("adapter", "merged")))) == [
        2,
        3,
    ]
    assert ids(rank_entries(entries, SPEC, ViewOptions(weight_types=("original",)))) == [1]
    assert facet_values(entries)["weight_types"] == ["adapter", "merged", "original"]
    assert rank_entries(entries, SPEC)[0].to_json()["weight_type"] == "adapter"
    assert ids(rank_entries(entries, SPEC, ViewOptions(sort="weight_type"))) == [2, 3, 1]


POSTGRES = os.environ.get("MEDBOARD_TEST_POSTGRES")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database: SQLite, and the real PostgreSQL when MEDBOARD_TEST_POSTGRES is set."""
    if request.param == "sqlite":
        return open_database(f"sqlite:///{tmp_path}/db.sqlite")
    if not POSTGRES:
        pytest.skip("MEDBOARD_TEST_POSTGRES is not set")
    engine = create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return open_database(POSTGRES)


def _results(name: str, limit: int | None, n: int | None = None) -> list[RunResult]:
    """One medboard run per FlowerTune task, as `medboard eval --limit` records them."""
    results = []
    for task in FT.tasks:
        size = REGISTRY.task(task).expected_size or 0
        count = n if n is not None else min(limit or size, size)
        spec = RunSpec(
            task=task, task_version="1", protocol="flowertune/1", dataset=task, split="test",
            data_hash=f"sha256:{task}", model=name, model_revision=name, dtype="bfloat16",
            limit=limit, harness_version="0.1.0",
        )  # fmt: skip
        results.append(
            RunResult(
                key=spec.key(),
                spec=spec,
                scores={"acc": Score(value=0.9, stderr=0.05)},
                n_samples=count,
                prompt_tokens=0,
                started_at="",
                finished_at="2026-01-01T00:00",
                wall_seconds=1.0,
                data_source="test",
                samples_file="",
            )  # fmt: skip
        )
    return results


def test_limited_runs_read_from_the_database(any_database: Database, tmp_path: Path) -> None:
    """The limit of each run comes from the runs' own JSON (RunSpec.limit) in the same query
    as the scores; lm-eval imports from their config; published rows are complete."""
    database = any_database
    table = tmp_path / "ft.csv"
    table.write_text(
        "rank,team,base_model,comm_cost_gb,average,pubmedqa,medmcqa,medqa,careqa,date\n"
        "1,ZeroOne.AI,Llama3.1-Aloe-Beta-8B,2.0,63.57,74.80,55.39,59.31,64.79,2026-01-14\n",
        encoding="utf-8",
    )
    import_published(database, table)
    extra = {"protocol": "flowertune/1"}
    ids = {}
    for name, limit, n in [("limited", 30, None), ("whole", None, None), ("over", 10_000, None)]:
        identity = {"model": name, "revision": name, "dtype": "bfloat16"}
        ids[name] = record_entry(
            database, "flowertune_medical", _results(name, limit, n), identity, {}, extra=extra
        )
    lmeval = lmeval_folder(tmp_path / "lm", {"pubmedqa": 0.8}, with_samples=False)
    summary_path = next(lmeval.rglob("results_*.json"))
    summary = json.loads(summary_path.read_text())
    summary["config"]["limit"] = 2
    summary_path.write_text(json.dumps(summary))
    imported = import_results(database, lmeval, track="flowertune_medical").entry_id
    with database.session() as session:
        entries = {e.entry_id: e for e in load_entries(session, "flowertune_medical")}
    assert entries[ids["limited"]].scores["pubmedqa"].limit == 30
    assert entries[ids["whole"]].scores["pubmedqa"].limit is None
    assert entries[imported].scores["pubmedqa"].limit == 2  # type: ignore[index]
    rows = {r.entry_id: r for r in rank_entries(entries.values(), FT)}
    assert rows[ids["limited"]].rank is None
    assert rows[ids["limited"]].partial_text == "partial: 30 questions per task"
    assert rows[ids["whole"]].rank == 1 and rows[ids["over"]].rank == 1  # limits that cut nothing
    assert rows[imported].subset == ("pubmedqa",)  # type: ignore[index]
    published = next(r for r in rows.values() if r.origin == "published")
    assert published.rank == 3 and published.ranking == "flowertune"  # after the two at 90%
    assert published.average == pytest.approx(0.6357) and published.recomputed_average is None


def test_percent_text_rounds_half_up_in_decimal() -> None:
    assert percent_text((0.2180 + 0.2160 + 0.2210 + 0.2224) / 4) == "21.94"  # 21.935, not .93
    assert percent_text(0.11295) == "11.30" and percent_text(0.631275) == "63.13"
    assert percent_text(0.5) == "50.00" and percent_text(1 / 3, 1) == "33.3"
    assert percent_text(0.5, 0) == "50" and percent_text(-0.00125) == "-0.13"


def test_eval_record_with_a_limit_marks_the_entry(medboard_home: Path, tmp_path: Path) -> None:
    """`medboard eval --record --limit` (medboard.evaluation): the entry records its limit, so it
    reads as partial even where SQLite cannot parse a run's JSON (one question's NaN stderr, as
    runs were recorded before it was written as null)."""
    from medboard.backends import registry
    from medboard.evaluation import evaluate_spec
    from medboard.runner import EvalOptions

    import_fixture_tasks(medboard_home)
    database = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    tasks = REGISTRY.resolve("open_medical", None)
    ids = {}
    for name, limit in [("limited", 1), ("whole", None)]:
        options = EvalOptions(limit=limit, allow_data_mismatch=True)
        evaluated = evaluate_spec(registry.resolve("fake"), tasks, options)
        ids[name] = evaluated.record(database, "open_medical", {"name": name}, "test")
    with database.session() as session:
        valid = session.scalars(select(func.json_valid(Run.result))).all()
        assert set(valid) == {1}  # record.py writes an undefined stderr as null, not NaN
        # as a database recorded before that holds it: a run's JSON SQLite cannot read
        run = session.scalars(select(Run).where(Run.n_samples == 1)).first()
        assert run is not None
        run.result = {**run.result, "scores": {"acc": {"value": 1.0, "stderr": math.nan}}}
    with database.session() as session:
        assert 0 in session.scalars(select(func.json_valid(Run.result))).all()
        entries = load_entries(session, "open_medical")  # the entry's own mark counts
        assert session.get(Entry, ids["limited"]).extra == {"limit": 1}  # type: ignore[union-attr]
        assert session.get(Entry, ids["whole"]).extra == {}  # type: ignore[union-attr]
    rows = {r.entry_id: r for r in rank_entries(entries, track_spec("open_medical"))}
    limited = rows[ids["limited"]]
    assert limited.rank is None and limited.partial_text == "partial: 1 question per task"
    assert rows[ids["whole"]].rank == 1 and rows[ids["whole"]].subset == ()
