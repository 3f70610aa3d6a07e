"""`medboard worker`: claim one job at a time, evaluate it, record the entry, repeat.

A heartbeat thread keeps the claim alive while the evaluation runs. When a worker dies, its job
is claimed again once the lease expires, and the evaluation resumes from the run store's answer
cache (a run's key does not depend on the worker), so nothing finished is computed twice.
"""

import logging
import os
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from medboard.backends import registry
from medboard.errors import MedboardError, TransientError
from medboard.evaluation import Evaluated, evaluate_spec
from medboard.queue.claims import (
    DEFAULT_LEASE_SECONDS,
    claim,
    fail,
    finish_in,
    heartbeat,
    release,
    retry_later,
)
from medboard.queue.public import check_public_settings
from medboard.queue.submissions import evaluated_entry, spec_of, validate_queued
from medboard.results.db import Database, Entry, Submission, utcnow
from medboard.runner import BatchPace, EvalOptions, SilentReporter
from medboard.tasks.protocols import protocol_version

log = logging.getLogger("medboard.worker")
# How long a job whose model server (or the Hub) was down waits before each next try, unless
# MEDBOARD_RETRY_WAITS says otherwise (retry_waits).
RETRY_WAITS = (60.0, 300.0, 900.0, 3600.0, 3600.0)
RETRY_ENV = "MEDBOARD_RETRY_WAITS"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_WAIT = re.compile(r"(\d+(?:\.\d*)?)([smhd]?)")


def retry_waits() -> tuple[float, ...]:
    """The waits, in seconds, before each next try of a job whose model server or Hub was down:
    MEDBOARD_RETRY_WAITS, comma-separated durations (`30s`, `5m`, `1h`, `1d`; a bare number is
    seconds; `none`: such a job fails at once), else RETRY_WAITS (1m,5m,15m,1h,1h). Read when a
    worker starts (a wrong value is one line then) and at each wait."""
    text = os.environ.get(RETRY_ENV, "").strip()
    if not text:
        return RETRY_WAITS
    if text.lower() == "none":
        return ()
    waits = []
    for part in text.split(","):
        found = _WAIT.fullmatch(part.strip().lower())
        if found is None:
            raise MedboardError(
                f"{RETRY_ENV}: '{part.strip()}' is not a wait (durations such as "
                "1m,5m,15m,1h,1h, or none)"
            )
        waits.append(float(found.group(1)) * _UNITS[found.group(2) or "s"])
    return tuple(waits)


def check_settings() -> None:
    """The operator's queue settings (public submissions, retry waits), read when a board or a
    worker starts: a wrong one is one line then, before anything is opened."""
    check_public_settings()
    retry_waits()


class LostClaimError(Exception):
    """Another worker took the job over (this one's heartbeat had expired)."""


class WorkerStopped(Exception):
    """The worker was asked to stop (its `stop` event) while it evaluated a job."""


def default_name() -> str:
    return f"{socket.gethostname()}:{threading.get_native_id()}"


class _JobReporter(SilentReporter):
    """Logs progress now and then, keeps where the job is for the heartbeat to store (the queue
    page shows it), and stops the evaluation once the claim is lost.

    Besides the current task, it keeps the whole job: questions done of all its tasks
    (`job_done` of `job_total`; a task not started yet counts its expected size, `sizes`) and
    the time the job has left (`job_eta_seconds`, None until there is a pace to go by): the
    current task's own estimate (BatchPace), and the tasks after it at the pace of the questions
    computed so far, this task's projected to its end."""

    def __init__(
        self,
        job_id: int,
        lost: threading.Event,
        tasks: int,
        stopping: threading.Event | None = None,
        every: float = 30.0,
        sizes: Mapping[str, int | None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.lost = lost
        self.stopping = stopping
        self.every = every
        self.last = 0.0
        self._pace = BatchPace()
        self._sizes: dict[str, int | None] = dict(sizes or {})  # task -> its questions
        self._finished: set[str] = set()
        self._worked = (0, 0.0)  # questions computed (not cached) in finished tasks, seconds
        self._task_start = (0.0, 0)  # when the current task started, its questions cached then
        # Replaced whole, never changed in place: the heartbeat thread reads it (progress).
        self._progress: dict[str, Any] = {
            "tasks_done": 0, "tasks": tasks, "task": None, "done": 0, "total": 0,
            "eta_seconds": None, "job_done": 0, "job_total": self._job_total(),
            "job_eta_seconds": None,
        }  # fmt: skip

    def _job_total(self) -> int | None:
        sizes = list(self._sizes.values())
        if not sizes or None in sizes:
            return None
        return sum(s for s in sizes if s is not None)

    def _job(self, task: str | None, done: int, total: int, eta: int | None) -> dict[str, Any]:
        """The whole job's numbers, with the current task at `done` of `total`."""
        finished = sum(self._sizes.get(t) or 0 for t in self._finished)
        later = [s for t, s in self._sizes.items() if t not in self._finished and t != task]
        questions, seconds = self._worked
        rate, left = None, 0.0
        if task is not None and eta is not None:
            since, cached = self._task_start
            fresh = total - cached
            span = time.monotonic() - since + eta
            if questions + fresh > 0 and seconds + span > 0:
                rate, left = (questions + fresh) / (seconds + span), float(eta)
        elif questions > 0 and seconds > 0:
            rate = questions / seconds
            left = (total - done) / rate if task is not None else 0.0
        known = all(s is not None for s in later)
        job_eta = None
        if rate is not None and known:
            job_eta = round(left + sum(s or 0 for s in later) / rate)
        return {
            "job_done": finished + (done if task is not None else 0),
            "job_total": self._job_total(),
            "job_eta_seconds": job_eta,
        }

    def _set(self, **changes: Any) -> None:
        p = {**self._progress, **changes}
        self._progress = {**p, **self._job(p["task"], p["done"], p["total"], p["eta_seconds"])}

    def _log(self) -> None:
        p = self._progress
        log.info("job #%d: %s %d/%d", self.job_id, p["task"], p["done"], p["total"])

    def start(self, task: str, total: int, done: int) -> None:
        self._sizes[task] = total  # what the task has, whatever was expected
        self._task_start = (time.monotonic(), done)
        self._set(task=task, total=total, done=done, eta_seconds=None)
        self._log()

    def batches(self, pending: int) -> None:
        self._pace.plan(pending)

    def advance(self, n: int) -> None:
        if self.lost.is_set():
            raise LostClaimError(f"job #{self.job_id} was claimed by another worker")
        if self.stopping is not None and self.stopping.is_set():
            raise WorkerStopped(f"job #{self.job_id}: the worker is stopping")
        self._set(done=self._progress["done"] + n, eta_seconds=self._pace.step())
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._log()

    def finish(self, result: Any, cached: bool) -> None:
        task = self._progress["task"]
        if cached:  # a run finished before: never started here
            spec = getattr(result, "spec", None)
            task = getattr(spec, "task", None)
            if task is not None:
                self._sizes[task] = getattr(result, "n_samples", None) or self._sizes.get(task)
        elif task is not None:
            since, was_cached = self._task_start
            questions, seconds = self._worked
            fresh = self._progress["total"] - was_cached
            self._worked = (questions + fresh, seconds + time.monotonic() - since)
        if task is not None:
            self._finished.add(task)
        self._set(
            tasks_done=self._progress["tasks_done"] + 1, task=None, total=0, done=0,
            eta_seconds=None,
        )  # fmt: skip

    def progress(self) -> dict[str, Any]:
        """Where the job is: tasks finished of all, and the questions done in the current
        task (task None between tasks, e.g. while the model loads), and in the whole job.
        Called from the heartbeat thread: a snapshot the evaluating thread replaces whole, never
        one half-updated."""
        return self._progress


def _beat(
    database: Database, job_id: int, worker: str, every: float, stop: threading.Event,
    lost: threading.Event, progress: Callable[[], dict[str, Any]],
) -> None:  # fmt: skip
    while not stop.wait(every):
        try:
            if not heartbeat(database, job_id, worker, progress()):
                lost.set()
                return
        except Exception:  # a database hiccup: try again at the next beat
            log.warning("job #%d: heartbeat failed", job_id, exc_info=True)


def evaluate_job(
    database: Database,
    job: Submission,
    worker: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    options: EvalOptions | None = None,
    stopping: threading.Event | None = None,
    backend_args: Mapping[str, str] | None = None,
) -> int:
    """Evaluate a claimed job on its track, record its entry and mark the job finished;
    returns the entry id. `backend_args`: the worker's own (device, kernels), for the jobs
    whose backend takes them.

    Stopped mid-evaluation (Ctrl-C, or `stopping` set: seen after the batch in progress), it
    gives the job back to the queue before it raises (`release`)."""
    from medboard.tasks import REGISTRY

    tasks = REGISTRY.resolve(job.track, None)

    def unchanged(identity: dict[str, Any]) -> None:
        # A Hub model is pinned by its commit, a served one by what its server says (a worker
        # may reach the model on its own server): a local file by its hash, checked again.
        if job.info.get("kind") not in ("hub", "served") and identity["revision"] != job.revision:
            raise MedboardError(f"{job.model} changed since it was submitted (its hash differs)")
        submitted = job.info.get("adapter_hash")
        if job.adapter and submitted and identity.get("adapter_hash") != submitted:
            raise MedboardError(
                f"adapter {job.adapter} changed since it was submitted (its hash differs)"
            )

    stop, lost = threading.Event(), threading.Event()
    options = options or EvalOptions()
    if job.info.get("entry") is not None:  # a federated run: scored on its track's eval-limit
        options = replace(options, limit=job.info.get("limit") or None)
    limit = options.limit
    sizes = {
        t.name: t.expected_size if limit is None or t.expected_size is None
        else min(limit, t.expected_size)
        for t in tasks
    }  # fmt: skip
    reporter = _JobReporter(job.id, lost, len(tasks), stopping, sizes=sizes)
    beater = threading.Thread(
        target=_beat,
        args=(database, job.id, worker, max(lease_seconds / 4, 0.05), stop, lost),
        kwargs={"progress": reporter.progress},
        daemon=True,
    )
    beater.start()  # before a public Hub model is validated: that downloads it
    interrupted: BaseException | None = None
    try:
        if job.info.get("validated") is False:  # queued unchecked from the web (queue.public)
            validated = validate_queued(database, job, worker)
            if validated is None:
                raise LostClaimError(f"job #{job.id} was claimed by another worker")
            job = validated
        spec = registry.for_job(spec_of(job), backend_args or {})
        asked = replace(options, protocol=job.protocol)
        evaluated = evaluate_spec(spec, tasks, asked, reporter, unchanged)
    except (KeyboardInterrupt, WorkerStopped) as exc:
        interrupted = exc
    finally:
        stop.set()
        beater.join()
    if interrupted is not None:
        if release(database, job.id, worker):
            log.warning("job #%d: stopped mid-job, back in the queue", job.id)
        raise interrupted
    if lost.is_set() or not heartbeat(database, job.id, worker):
        raise LostClaimError(f"job #{job.id} was claimed by another worker")
    # The entry and the job's "finished" are one transaction: a worker killed while recording
    # leaves neither (the job is reclaimed and recorded once), and a worker whose job was taken
    # over meanwhile records nothing.
    with database.session() as session:
        entry_id = _record(session, job, evaluated)
        if not finish_in(session, job.id, worker, entry_id):
            raise LostClaimError(f"job #{job.id} was claimed by another worker")
    return entry_id


def _record(session: Session, job: Submission, evaluated: Evaluated) -> int:
    """The job's entry, recorded in the caller's transaction; one model identity gets one
    evaluated entry per track and protocol: when it has one already (a finished job run again,
    an `eval --record`), the job links to it and nothing new is recorded."""
    identity = evaluated.identity
    found = evaluated_entry(
        session, identity["revision"], identity.get("adapter_hash") or "", identity["dtype"],
        job.track, job.protocol,
    )  # fmt: skip
    if found is not None:
        log.info("job #%d: the model has entry %d already; nothing recorded", job.id, found.id)
        entry_id = found.id
    else:
        # What the submission fixed for its entry (medboard fl submit: team, comm. cost...)
        given = job.info.get("entry") or {}
        details = {
            "name": job.info.get("name") or job.model,
            "parameters": job.info.get("parameters"),
            "license": job.info.get("license"),
            "model_type": job.model_type,
            **{k: v for k, v in given.items() if k != "extra"},
        }
        extra = {
            **(given.get("extra") or {}),
            "protocol": protocol_version(job.protocol),
            "weight_type": job.weight_type,
            "description": job.description or "",
        }
        source = f"submission #{job.id}"
        entry_id = evaluated.record(session, job.track, details, source, extra=extra)
    model = session.get(Entry, entry_id).model  # type: ignore[union-attr]
    if model.model_type == "unknown":  # a model row found, not made: it learns its type
        model.model_type = job.model_type
    return entry_id


def _wait_or_fail(database: Database, job: Submission, worker: str, exc: Exception) -> str:
    """A failure that may pass (its model server down after the retries of each request, the
    Hub not answering): the job waits in the queue and is tried again, resuming from its
    cached answers, after each of retry_waits() (1 min, 5 min, 15 min, 1 h, 1 h by default);
    after the last, it fails."""
    waits = retry_waits()
    if job.retries >= len(waits):
        tries = f" (and in {len(waits)} more tries over {_spelled(sum(waits))})" if waits else ""
        reason = f"{exc}{tries}"
        fail(database, job.id, worker, reason)
        log.warning("job #%d failed: %s", job.id, reason)
        return "failed"
    seconds = waits[job.retries]
    when = (utcnow() + timedelta(seconds=seconds)).strftime("%H:%M:%S UTC")
    reason = f"waiting to try again at {when} ({job.retries + 1} of {len(waits)}): {exc}"
    retry_later(database, job.id, worker, reason, seconds)
    log.warning("job #%d: %s", job.id, reason)
    return "waiting"


def _spelled(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def run_job(
    database: Database,
    job: Submission,
    worker: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    options: EvalOptions | None = None,
    stopping: threading.Event | None = None,
    backend_args: Mapping[str, str] | None = None,
) -> str:
    """Evaluate one claimed job and mark it finished or failed; returns the final status
    ("released" when `stopping` was set mid-job: the job is pending again; "waiting" when its
    model server or the Hub was down: it is pending again, to be tried later)."""
    from medboard.heap import thaw

    log.info("job #%d: %s (%s) on %s", job.id, job.model, job.dtype, job.track)
    try:
        entry_id = evaluate_job(
            database, job, worker, lease_seconds, options, stopping, backend_args
        )
    except LostClaimError as exc:
        log.warning("%s", exc)
        return "lost"
    except WorkerStopped:
        return "released"
    except TransientError as exc:
        return _wait_or_fail(database, job, worker, exc)
    except MedboardError as exc:
        fail(database, job.id, worker, str(exc))
        log.warning("job #%d failed: %s", job.id, exc)
        return "failed"
    except Exception as exc:
        fail(database, job.id, worker, f"internal error: {type(exc).__name__}: {exc}")
        log.error("job #%d failed:\n%s", job.id, traceback.format_exc())
        return "failed"
    finally:
        # The job's model is gone; without these the worker would keep its reference cycles
        # (frozen while it evaluated: heap.py) and its peak heap for good.
        thaw()
        registry.release()
    log.info("job #%d finished: entry %d", job.id, entry_id)
    return "finished"


def run_worker(
    database: Database,
    name: str | None = None,
    once: bool = False,
    poll_seconds: float = 2.0,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    stop: threading.Event | None = None,
    options: EvalOptions | None = None,
    backend_args: Mapping[str, str] | None = None,
    only: Collection[int] | None = None,
) -> int:
    """Drain the queue (`only`: these jobs of it); with `once`, stop when it is empty; once
    `stop` is set, stop after the batch in progress, giving its job back to the queue.
    `backend_args`: the worker's own (registry.per_run_args), for every job whose backend takes
    them. Returns the jobs handled."""
    name = name or default_name()
    stop = stop or threading.Event()
    backend_args = registry.per_run_args(backend_args or {})  # a bad one: before any claim
    handled = 0
    log.info("worker %s polling %s", name, database.shown)
    try:
        while not stop.is_set():
            job = claim(database, name, lease_seconds, only)
            if job is None:
                if once:
                    break
                stop.wait(poll_seconds)
                continue
            status = run_job(database, job, name, lease_seconds, options, stop, backend_args)
            if status != "released":
                handled += 1
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (`medboard worker` raises it for both)
        _before_exit()
        raise
    if stop.is_set():
        _before_exit()
    return handled


def _before_exit() -> None:
    """Freeze the heap of a worker told to stop (heap.py): its process exits next.

    Why idle workers outlived a SIGTERM by seconds: the signal itself is handled at once (the
    idle wait is interrupted), but after each job `run_job` thaws the heap, so the half million
    objects of the libraries a job imported (torch, transformers) are collectable again, and
    the interpreter's exit scans them, collection after collection, as it tears its modules
    down: about 6 s of CPU after one tiny-model job on a busy 2-core machine (0.7 s frozen),
    more with several workers exiting on few cores at once. A worker that never ran a job
    never imported them: it exits in about a second. Frozen, they are not scanned; what was
    garbage was collected by the thaw already."""
    from medboard.heap import freeze

    freeze()
