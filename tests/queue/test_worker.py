"""The worker on a real tiny model and the fixture tasks: a job goes pending -> finished."""

import gc
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from medboard.queue.claims import claim, release
from medboard.queue.submissions import SubmitRequest, get_submission, list_submissions, submit
from medboard.queue.worker import evaluate_job, run_worker
from medboard.results.db import Entry, Run, Submission, open_database
from medboard.runner import EvalOptions
from tests.conftest import import_fixture_tasks

OPTIONS = EvalOptions(allow_data_mismatch=True)  # the fixtures are not the real benchmarks


@pytest.fixture()
def home(medboard_home: Path) -> Path:
    import_fixture_tasks(medboard_home)
    return medboard_home


@pytest.fixture()
def database(tmp_path: Path):
    return open_database(f"sqlite:///{tmp_path / 'w.db'}")


def test_worker_evaluates_and_records_an_entry(tiny_model: Path, home: Path, database) -> None:
    job = submit(database, SubmitRequest(model=str(tiny_model), dtype="float32", submitter="a"))
    assert run_worker(database, "w1", once=True, options=OPTIONS) == 1
    (done,) = list_submissions(database)
    assert done.status == "finished", done.reason
    with database.session() as session:
        entry = session.get(Entry, done.entry_id)
        assert entry.origin == "evaluated" and entry.track == "open_medical"
        assert entry.source == f"submission #{job.id}"
        assert entry.model.parameters == job.info["parameters"]
        assert entry.model.revision == job.revision
        tasks = {s.task for s in entry.scores if s.metric == "acc"}
        assert len(tasks) == 9
        assert all(0.0 <= s.value <= 1.0 for s in entry.scores)
        # stderr is known wherever a task has more than one question (SQLite stores NaN as NULL)
        assert all(s.stderr is not None for s in entry.scores if s.n > 1)
        runs = session.scalars(select(Run)).all()
        assert len(runs) == 9 and all(Path(r.samples_path).exists() for r in runs)
    assert run_worker(database, "w1", once=True, options=OPTIONS) == 0  # queue empty
    assert gc.get_freeze_count() == 0  # the job's objects thawed: its cycles can be collected


def test_a_job_that_cannot_run_fails_with_its_reason(
    tiny_model: Path, home: Path, tmp_path: Path, database
) -> None:
    copy = tmp_path / "vanishing"
    shutil.copytree(tiny_model, copy)
    submit(database, SubmitRequest(model=str(copy), dtype="float32"))
    shutil.rmtree(copy)
    run_worker(database, "w1", once=True, options=OPTIONS)
    (job,) = list_submissions(database)
    assert job.status == "failed"
    assert "does not exist" in job.reason
    with database.session() as session:
        assert session.scalars(select(Entry)).all() == []


def test_a_model_changed_after_submission_fails(
    tiny_model: Path, home: Path, tmp_path: Path, database
) -> None:
    copy = tmp_path / "changing"
    shutil.copytree(tiny_model, copy)
    submit(database, SubmitRequest(model=str(copy), dtype="float32"))
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05'))
    run_worker(database, "w1", once=True, options=OPTIONS)
    (job,) = list_submissions(database)
    assert job.status == "failed" and "changed since it was submitted" in job.reason


def test_lost_claim_records_nothing(tiny_model: Path, home: Path, database, monkeypatch) -> None:
    import medboard.queue.worker as worker

    submit(database, SubmitRequest(model=str(tiny_model), dtype="float32"))
    job = claim(database, "slow")
    monkeypatch.setattr(worker, "heartbeat", lambda *a: False)  # someone else took it over
    assert worker.run_job(database, job, "slow", options=OPTIONS) == "lost"
    with database.session() as session:
        assert session.scalars(select(Entry)).all() == []


def test_a_job_taken_over_while_its_entry_is_recorded_leaves_no_entry(
    tiny_model: Path, home: Path, database, monkeypatch
) -> None:
    """The entry and the job's "finished" are one transaction: when the job is no longer this
    worker's at that moment (its lease ran out after the last heartbeat and another worker took
    it), the entry is rolled back instead of recorded twice, once by each worker."""
    import medboard.queue.worker as worker

    submit(database, SubmitRequest(model=str(tiny_model), dtype="float32"))
    job = claim(database, "slow")
    real_heartbeat = worker.heartbeat

    def taken_over_after_last_beat(*args: Any, **kwargs: Any) -> bool:
        alive = real_heartbeat(*args, **kwargs)
        if len(args) == 3:  # the last check, after the evaluation: then w2 takes the job over
            with database.session() as other:
                other.execute(update(Submission).where(Submission.id == job.id).values(worker="w2"))
        return alive

    monkeypatch.setattr(worker, "heartbeat", taken_over_after_last_beat)
    assert worker.run_job(database, job, "slow", options=OPTIONS) == "lost"
    with database.session() as session:
        assert session.scalars(select(Entry)).all() == []
    back = get_submission(database, job.id)
    assert (back.status, back.worker, back.entry_id) == ("running", "w2", None)


def test_the_heartbeat_stores_where_the_job_is(home: Path, database) -> None:
    """While a job runs, its row says which task and how many of its questions are done (the
    queue page shows it); finishing clears it."""
    options = "delay=0.15,batch=1"
    with database.session() as session:
        session.add(Submission(model=f"fake:{options}", revision=options, dtype="none",
                               track="open_medical", info={"kind": "fake"}))  # fmt: skip
    job = claim(database, "w1")
    assert job is not None and job.progress is None
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            progress = get_submission(database, job.id).progress
            if progress and (not seen or seen[-1] != progress):
                seen.append(progress)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        entry_id = evaluate_job(database, job, "w1", lease_seconds=0.2, options=OPTIONS)
    finally:
        stop.set()
        watcher.join()
    assert all(p["tasks"] == 9 for p in seen)
    inside = [p for p in seen if p["task"] is not None]
    assert len({p["task"] for p in inside}) >= 3, seen  # several tasks seen as they ran
    assert all(0 <= p["done"] <= p["total"] for p in inside)
    assert any(p["done"] > 0 for p in inside)
    # each task's estimate comes once two of its batches are done (the first also compiles)
    assert all(p["eta_seconds"] is None for p in inside if p["done"] == 0)
    estimates = [p["eta_seconds"] for p in inside if p["eta_seconds"] is not None]
    assert estimates and all(isinstance(e, int) and e >= 0 for e in estimates)
    order = [(p["tasks_done"], p["done"]) for p in seen]
    assert order == sorted(order)  # it only moves forward
    done = get_submission(database, job.id)
    assert (done.status, done.entry_id, done.progress) == ("finished", entry_id, None)


def test_the_estimate_is_the_pace_of_the_batches_after_the_first(monkeypatch) -> None:
    import medboard.queue.worker as worker

    now = [0.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: now[0])
    reporter = worker._JobReporter(1, threading.Event(), tasks=9, every=1e9)
    reporter.start("medqa_4options", total=100, done=0)
    reporter.batches(10)
    now[0] = 5.0
    reporter.advance(20)  # batch 1 ends at 5 s: it compiled, so no pace yet
    assert reporter.progress()["eta_seconds"] is None
    now[0] = 6.0
    reporter.advance(15)  # batch 2 took 1 s: 8 batches left
    assert reporter.progress()["eta_seconds"] == 8
    now[0] = 9.0
    reporter.advance(10)  # batches 2-3 took 4 s: 2 s each, 7 left
    assert reporter.progress()["eta_seconds"] == 14
    reporter.finish(None, cached=False)
    assert reporter.progress()["eta_seconds"] is None


def test_the_whole_job_progress_and_time_left(monkeypatch) -> None:
    """Questions over all the job's tasks, and the time the job has left: none until the
    first task has a pace, then its pace for the tasks after it."""
    import medboard.queue.worker as worker

    now = [0.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: now[0])
    sizes = {"a": 100, "b": 50, "c": 50}
    reporter = worker._JobReporter(1, threading.Event(), tasks=3, every=1e9, sizes=sizes)
    assert reporter.progress()["job_total"] == 200
    assert reporter.progress()["job_eta_seconds"] is None  # the model loads: no pace yet
    reporter.start("a", total=100, done=0)
    reporter.batches(10)
    now[0] = 5.0
    reporter.advance(10)
    assert reporter.progress()["job_eta_seconds"] is None  # the first batch compiles
    now[0] = 6.0
    reporter.advance(10)  # 1 s a batch: 8 s left in "a", which takes 14 s for 100 questions
    p = reporter.progress()
    assert (p["job_done"], p["job_total"], p["eta_seconds"]) == (20, 200, 8)
    assert p["job_eta_seconds"] == round(8 + 100 / (100 / 14))  # b and c at a's pace
    now[0] = 20.0
    reporter.finish(None, cached=False)  # "a": 100 questions in 20 s
    p = reporter.progress()
    assert (p["job_done"], p["job_eta_seconds"]) == (100, 20)  # 100 left, at 5 per second
    reporter.start("b", total=40, done=10)  # b has 40 questions (not 50), 10 cached
    p = reporter.progress()
    assert (p["job_done"], p["job_total"]) == (110, 190)
    assert p["job_eta_seconds"] == round(30 / 5 + 50 / 5)  # before b's own pace: a's
    reporter.finish(None, cached=False)
    assert reporter.progress()["job_done"] == 140


def test_release_gives_back_only_the_workers_own_running_job(home: Path, database) -> None:
    with database.session() as session:
        session.add(Submission(model="fake", revision="r", dtype="none", track="open_medical",
                               info={"kind": "fake"}))  # fmt: skip
    job = claim(database, "w1")
    assert not release(database, job.id, "w2")  # not w2's
    assert release(database, job.id, "w1")
    back = get_submission(database, job.id)
    assert (back.status, back.worker, back.heartbeat_at) == ("pending", None, None)
    assert not release(database, job.id, "w1")  # not running any more
    again = claim(database, "w2")  # taken at once, no lease to wait for
    assert again is not None and again.id == job.id and again.attempts == 2
