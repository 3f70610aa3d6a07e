"""Published tables: the FlowerTune medical table as is, medboard's CSV/JSON format, bad rows."""

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from medboard.errors import DataError
from medboard.leaderboard.published import import_published, read_published
from medboard.leaderboard.ranking import load_entries, percent_text, rank_entries, track_spec
from medboard.paths import shared_benchmarks
from medboard.results.db import Entry, Model, TaskScore, open_database

FLOWERTUNE = (
    "rank,team,base_model,comm_cost_gb,average,pubmedqa,medmcqa,medqa,careqa,date\n"
    "1,ZeroOne.AI,Llama3.1-Aloe-Beta-8B,2.0,63.57,74.80,55.39,59.31,64.79,2026-01-14\n"
    "2,FL-finetune-JB-DC,Bio-Medical-Llama-3-8B,1.6,63.12,70.40,60.93,65.82,55.36,2025-04-12\n"
    "9,FL-finetune-JB-DC,Bio-Medical-Llama-3-8B,1.6,60.75,70.20,59.29,59.23,54.31,2025-04-12\n"
)


@pytest.fixture()
def database(tmp_path: Path):
    return open_database(f"sqlite:///{tmp_path / 'board.db'}")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_flowertune_table_as_published(tmp_path: Path, database) -> None:
    report = import_published(database, write(tmp_path, "ft.csv", FLOWERTUNE))
    assert (report.added, report.format, report.already_imported) == (
        3,
        "flowertune-medical",
        False,
    )
    with database.session() as session:
        entries = session.scalars(select(Entry).order_by(Entry.id)).all()
        assert [e.origin for e in entries] == ["published"] * 3
        assert [e.track for e in entries] == ["flowertune_medical"] * 3
        first = entries[0]
        assert first.team == "ZeroOne.AI" and first.comm_cost_gb == 2.0
        assert first.date == "2026-01-14" and first.source == "ft.csv line 2"
        assert first.model.base_model == "Llama3.1-Aloe-Beta-8B"
        assert first.model.model_type == "federated"
        scores = {s.task: s.value for s in first.scores}
        assert scores == pytest.approx(
            {"pubmedqa": 0.748, "medmcqa": 0.5539, "medqa_4options": 0.5931, "careqa_en": 0.6479}
        )
        # two rows of one team's model are two entries of one model
        assert session.scalar(select(func.count()).select_from(Model)) == 2


def test_a_file_is_imported_once(tmp_path: Path, database) -> None:
    path = write(tmp_path, "ft.csv", FLOWERTUNE)
    import_published(database, path)
    again = import_published(database, path)
    assert again.already_imported and again.added == 0
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Entry)) == 3


def test_the_shared_published_table(database) -> None:
    benchmarks = shared_benchmarks()
    path = benchmarks.parent / "published" / "flowertune_medical.csv" if benchmarks else None
    if path is None or not path.exists():
        pytest.skip("../shared/published not present")
    assert import_published(database, path).added == 23
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(TaskScore)) == 23 * 4
    # the board shows each average as published; 6 rows' task columns average otherwise (at 2
    # decimals, rounded half up: rank 2's 63.1275 reads 63.13, not 63.12; rank 22's 11.295
    # 11.30; rank 20's 21.935 reads 21.94, as published, although 21.93499... in binary)
    spec = track_spec("flowertune_medical")
    with database.session() as session:
        rows = rank_entries(load_entries(session, "flowertune_medical"), spec)
    published = [float(r["average"]) for r in csv.DictReader(path.open(encoding="utf-8"))]
    shown = [round(100 * r.average, 2) for r in rows if r.average is not None]
    assert sorted(shown) == sorted(published)
    flagged = [r for r in rows if r.recomputed_average is not None]
    assert [r.rank for r in flagged] == [2, 4, 6, 9, 22, 23]
    assert [percent_text(r.recomputed_average or 0) for r in flagged] == [
        "63.13", "62.13", "61.76", "60.76", "11.30", "9.38",
    ]  # fmt: skip
    for row in flagged:
        assert abs(100 * (row.recomputed_average or 0) - 100 * (row.average or 0)) < 0.015
    assert [r.rank for r in rows] == sorted(r.rank for r in rows)  # ranked by those averages


def test_medboard_csv_and_json(tmp_path: Path, database) -> None:
    csv_text = (
        "model,track,medqa_4options,pubmedqa,parameters,dtype,model_type,average,date\n"
        "org/a,open_medical,30.0,50.0,135000000,bfloat16,instruct,40.0,2025-01-02\n"
    )
    assert import_published(database, write(tmp_path, "a.csv", csv_text)).added == 1
    rows = [{"model": "org/b", "mmlu_anatomy": 25.5, "team": "lab"}]
    report = import_published(
        database, write(tmp_path, "b.json", json.dumps(rows)), track="open_medical"
    )
    assert report.format == "medboard-json"
    with database.session() as session:
        b = session.scalars(select(Entry).join(Model).where(Model.name == "org/b")).one()
        assert b.track == "open_medical" and b.team == "lab"
        assert b.scores[0].value == pytest.approx(0.255)
        a = session.scalars(select(Model).where(Model.name == "org/a")).one()
        assert a.parameters == 135_000_000 and a.model_type == "instruct"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("x.csv", "model,track,medqa\nm,open_medical,30\n", "unknown column.*medqa"),
        ("x.csv", "model,track,pubmedqa\nm,open_medical,130\n", "line 2: score of pubmedqa is 130"),
        ("x.csv", "model,track,pubmedqa\nm,nowhere,30\n", "line 2: track 'nowhere'"),
        ("x.csv", "model,track,pubmedqa\n,open_medical,30\n", "line 2: no model name"),
        ("x.csv", "model,track,pubmedqa\nm,open_medical,abc\n", "'abc' is not a number"),
        (
            "x.csv",
            "model,track,pubmedqa,medmcqa,average\nm,open_medical,30,50,45\n",
            "average 45.0 is not the mean",
        ),
        ("x.csv", "model,track,pubmedqa,date\nm,open_medical,30,1/2/2025\n", "not YYYY-MM-DD"),
        ("x.json", '{"model": 1}', "expected a JSON list"),
        ("x.json", '[{"model": ', "not valid JSON"),
        ("x.txt", "hello", "a .csv or .json file"),
        ("x.csv", "model,track,pubmedqa\n", "no entries"),
    ],
)
def test_bad_tables_are_refused_whole(tmp_path: Path, database, name, text, message) -> None:
    good_then_bad = write(tmp_path, name, text)
    with pytest.raises(DataError, match=message):
        import_published(database, good_then_bad)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Entry)) == 0


def test_one_bad_row_writes_nothing(tmp_path: Path, database) -> None:
    text = FLOWERTUNE + "10,Team,Base,1.0,50.00,50.00,50.00,50.00,150.00,2025-01-01\n"
    with pytest.raises(DataError, match="line 5: score of careqa_en is 150"):
        import_published(database, write(tmp_path, "ft.csv", text))
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Entry)) == 0


def test_missing_file() -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_published(Path("/nonexistent/table.csv"))
