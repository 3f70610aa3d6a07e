"""Ranking as a pure function: order, ties, partial entries, sorting, search and filters."""

from pathlib import Path

import pytest

from medboard.errors import MedboardError
from medboard.leaderboard.published import import_published
from medboard.leaderboard.ranking import (
    LeaderboardSpec,
    StoredEntry,
    StoredScore,
    UnknownTrackError,
    ViewOptions,
    interval,
    load_entries,
    rank_entries,
    track_spec,
)
from medboard.results.db import open_database

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
    assert ids(rank_entries(ENTRIES, SPEC, ViewOptions(sort="a"))) == [4, 5, 2, 3, 1]


def test_sort_by_text_numbers_and_rank() -> None:
    by_model = rank_entries(ENTRIES, SPEC, ViewOptions(sort="model"))
    assert [r.model for r in by_model] == ["Alpha", "best", "beta", "partial", "zeta"]
    by_params = rank_entries(ENTRIES, SPEC, ViewOptions(sort="parameters"))
    assert ids(by_params) == [5, 1, 4, 2, 3]  # descending by default; unknown size last
    small_first = rank_entries(ENTRIES, SPEC, ViewOptions(sort="parameters", descending=False))
    assert ids(small_first) == [2, 4, 1, 5, 3]
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
