"""lm-eval output folders in (import-results) and out (export), on small folders in its format."""

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from medboard.backends import create_backend
from medboard.errors import DataError
from medboard.leaderboard.exchange import export_entries, import_all, import_results
from medboard.results.db import Entry, Run, open_database
from medboard.results.record import record_entry
from medboard.runner import EvalOptions, evaluate
from medboard.tasks import REGISTRY
from tests.conftest import import_fixture_tasks

STAMP = "2026-11-22T05-47-51.065905"


def lmeval_folder(root: Path, tasks: dict[str, float], with_samples: bool = True) -> Path:
    """A folder as `lm_eval --output_path root --log_samples` leaves it (0.4.x layout)."""
    folder = root / "__tmp__model"
    folder.mkdir(parents=True)
    results = {
        name: {"alias": name, "acc,none": acc, "acc_stderr,none": 0.05}
        for name, acc in tasks.items()
    }
    summary = {
        "results": results,
        "versions": {name: 1.0 for name in tasks},
        "n-samples": {name: {"original": 2, "effective": 2} for name in tasks},
        "config": {"model": "hf", "model_args": "pretrained=org/model,dtype=bfloat16"},
        "lm_eval_version": "0.4.13",
        "date": 1795324791.17,
    }
    (folder / f"results_{STAMP}.json").write_text(json.dumps(summary))
    if with_samples:
        for name in tasks:
            rows = []
            for doc_id, (gold, lps) in enumerate([(0, [-1.0, -2.0]), (1, [-0.5, -3.0])]):
                rows.append(
                    {
                        "doc_id": doc_id,
                        "doc": {"id": f"q{doc_id}", "subject": "anatomy"},
                        "target": str(gold),
                        "arguments": {
                            "gen_args_0": {"arg_0": "Q:", "arg_1": " A"},
                            "gen_args_1": {"arg_0": "Q:", "arg_1": " B"},
                        },
                        "resps": [[[lp, False]] for lp in lps],
                        "filtered_resps": [[lp, False] for lp in lps],
                        "acc": float(gold == 0),
                    }
                )
            text = "\n".join(json.dumps(r) for r in rows) + "\n"
            (folder / f"samples_{name}_{STAMP}.jsonl").write_text(text)
    return root


@pytest.fixture()
def database(tmp_path: Path, medboard_home: Path):
    return open_database(f"sqlite:///{tmp_path / 'x.db'}")


def test_import_an_lmeval_folder(tmp_path: Path, database) -> None:
    root = lmeval_folder(tmp_path / "out", {"ref_pubmedqa": 0.5, "medmcqa": 0.25, "hellaswag": 0.3})
    report = import_results(database, root)
    assert report.tasks == ["medmcqa", "pubmedqa"] and report.skipped == ["hellaswag"]
    assert report.track == "flowertune_medical"
    with database.session() as session:
        entry = session.get(Entry, report.entry_id)
        assert entry.origin == "imported" and entry.extra["lm_eval_version"] == "0.4.13"
        assert entry.model.name == "org/model" and entry.model.dtype == "bfloat16"
        assert entry.date == "2026-11-22"
        assert {s.task: s.value for s in entry.scores} == {"pubmedqa": 0.5, "medmcqa": 0.25}
        run = session.scalars(select(Run).where(Run.task == "pubmedqa")).one()
        samples = [json.loads(x) for x in Path(run.samples_path).read_text().splitlines()]
    assert samples[0] == {
        "id": "q0", "choices": ["A", "B"], "logprobs": [-1.0, -2.0], "greedy": [False, False],
        "pred": 0, "gold": 0, "acc": 1.0, "subject": "anatomy",
    }  # fmt: skip
    again = import_results(database, root)
    assert again.entry_id is None  # the same results file is imported once


def test_import_errors(tmp_path: Path, database) -> None:
    with pytest.raises(DataError, match="no lm-eval results"):
        import_results(database, tmp_path)
    root = lmeval_folder(tmp_path / "other", {"hellaswag": 0.3})
    with pytest.raises(DataError, match="no task medboard knows \\(found: hellaswag\\)"):
        import_results(database, root)
    root = lmeval_folder(tmp_path / "broken", {"pubmedqa": 0.5})
    sample = next(root.rglob("samples_*.jsonl"))
    sample.write_text('{"doc_id": 0}\nnot json\n')
    with pytest.raises(DataError, match="line 1: not a log-likelihood sample"):
        import_results(database, root)
    with database.session() as session:
        assert session.scalars(select(Entry)).all() == []


def test_export_then_import_round_trip(tmp_path: Path, medboard_home: Path, database) -> None:
    import_fixture_tasks(medboard_home)
    backend = create_backend("fake")
    tasks = REGISTRY.resolve("flowertune_medical", None)
    results = evaluate(tasks, backend, options=EvalOptions(allow_data_mismatch=True))
    entry_id = record_entry(database, "flowertune_medical", results, backend.identity())
    (written,) = export_entries(database, tmp_path / "export", [entry_id])
    assert written.name.startswith("results_")
    report = import_results(database, written)
    with database.session() as session:
        original = {(s.task, s.metric): s.value for s in session.get(Entry, entry_id).scores}
        back = {(s.task, s.metric): s.value for s in session.get(Entry, report.entry_id).scores}
        assert back == original
        runs = {r.task: r for r in session.scalars(select(Run).where(Run.harness == "lm-eval"))}
    for result in results:
        mine = [json.loads(x) for x in Path(result.samples_file).read_text().splitlines()]
        theirs = [
            json.loads(x)
            for x in Path(runs[result.spec.task].samples_path).read_text().splitlines()
        ]
        assert [(s["id"], s["logprobs"], s["gold"], s["pred"]) for s in mine] == [
            (s["id"], s["logprobs"], s["gold"], s["pred"]) for s in theirs
        ]
    with pytest.raises(DataError, match="no evaluated or imported entry with id \\[999\\]"):
        export_entries(database, tmp_path / "none", [999])


def test_an_export_of_several_entries_imports_back_as_as_many(
    tmp_path: Path, medboard_home: Path, database
) -> None:
    """`medboard import-results` of a folder with several models' runs took only the newest."""
    import_fixture_tasks(medboard_home)
    tasks = REGISTRY.resolve("flowertune_medical", None)
    ids = []
    for spec in ("fake", "fake:bias=B"):
        backend = create_backend(spec)
        results = evaluate(tasks, backend, options=EvalOptions(allow_data_mismatch=True))
        ids.append(record_entry(database, "flowertune_medical", results, backend.identity()))
    export_entries(database, tmp_path / "export", ids)
    with pytest.raises(DataError, match="holds the runs of 2 models"):
        import_results(database, tmp_path / "export")  # one model's function: not silently one
    reports = import_all(database, tmp_path / "export")
    assert len(reports) == 2 and all(r.entry_id is not None for r in reports)
    with database.session() as session:

        def scores(entry_id: int) -> dict[tuple[str, str], float]:
            return {(s.task, s.metric): s.value for s in session.get(Entry, entry_id).scores}

        assert [scores(r.entry_id) for r in reports] == [scores(i) for i in ids]
    assert [r.entry_id for r in import_all(database, tmp_path / "export")] == [None, None]
