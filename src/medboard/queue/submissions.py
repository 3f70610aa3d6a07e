"""Submissions: checked (the public's as queue.public says), refused as duplicates or over the
rate limit (queue.limits), queued; a public Hub model validated by the worker that claims it.
How workers then hold a job (claim, heartbeat, finish, fail) is queue.claims.
"""

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from medboard.backends import ModelInfo, ModelSpec, registry
from medboard.errors import (
    DuplicateSubmissionError,
    HubUnreachableError,
    MedboardError,
    SubmissionError,
    TransientError,
)
from medboard.queue.claims import get_submission, update_claimed
from medboard.queue.limits import check_rate, check_rate_in, lock_submissions, origin_key
from medboard.queue.public import (
    NOT_ON_HUB,
    check_public_args,
    public_max_parameters,
    public_model,
)
from medboard.results.db import MODEL_TYPES, Database, Entry, Model, Submission
from medboard.tasks import TRACKS

DEFAULT_DTYPE = "bfloat16"  # what the Open Medical-LLM board evaluates in
# Spec arguments with a column of their own in the submissions table.
COLUMNS = ("dtype", "revision", "adapter")
Validator = Callable[[ModelSpec], ModelInfo]
ACTIVE = ("pending", "running", "finished")  # as the dedup index of migration 0006
WEIGHT_TYPES = ("original", "adapter", "delta")  # as the Open LLM Leaderboard's form
# Protocols a submission may ask for (medboard.tasks.protocols): the Open Medical-LLM
# board's log-likelihood scoring, and the corrected generative one; flowertune reproduces a
# label leak (never to rank models) and cot is for studies.
PROTOCOLS = ("loglik", "generative")
# A federated run (medboard fl submit) is also scored by flowertune: the protocol of the
# FlowerTune table it is compared with (its entry is ranked among that protocol's entries only).
FEDERATED_PROTOCOLS = ("loglik", "flowertune", "generative")
CAPABILITY = {"loglik": "loglikelihood", "generative": "generate", "flowertune": "generate"}


@dataclass(frozen=True)
class SubmitRequest:
    model: str  # a model spec's text: local path, .gguf file, Hub id, or BACKEND:MODEL
    track: str = "open_medical"
    # The precision, where the backend has one (a served model's is the server's).
    dtype: str | None = DEFAULT_DTYPE
    revision: str = ""
    adapter: str | None = None
    submitter: str = ""
    name: str = ""  # how the board names the model (default: `model` as given)
    args: Mapping[str, Any] = field(default_factory=dict)  # the backend's (-M key=value)
    model_type: str = "unknown"  # one of MODEL_TYPES
    weight_type: str | None = None  # WEIGHT_TYPES; default: adapter with an adapter, else original
    description: str = ""
    protocol: str = "loglik"  # one of PROTOCOLS (FEDERATED_PROTOCOLS with `entry`)
    # What the entry will carry besides its scores, fixed at submission (medboard fl submit:
    # team, comm. cost, code link, date, and `extra`: the federated run's figures); never from
    # the web. `limit`: the first N questions of each task (a federated track's eval-limit).
    entry: Mapping[str, Any] | None = None
    limit: int | None = None
    # From the public web form or API: local paths only inside the operator's models folder,
    # and a Hub model queued unchecked, for the worker to validate (queue.public).
    public: bool = False
    origin: str = ""  # a public request's client address (queue.limits counts it)


def approval_required() -> bool:
    """Whether new submissions wait for an admin's approval (MEDBOARD_REQUIRE_APPROVAL=1)."""
    return os.environ.get("MEDBOARD_REQUIRE_APPROVAL", "") not in ("", "0", "false", "no")


# What the database's columns hold: the model spec becomes the models table's name (300
# characters; a longer one would pass validation and fail only when its entry is recorded, on
# PostgreSQL, after the whole evaluation).
FIELD_LIMITS = {
    "model": 300, "revision": 100, "adapter": 500, "submitter": 200, "name": 300,
    "description": 500,
}  # fmt: skip


def check_field(field: str, value: str) -> None:
    """A submission field (one of FIELD_LIMITS) within its length and without control
    characters."""
    limit = FIELD_LIMITS[field]
    if len(value) > limit:
        raise SubmissionError(f"{field} is too long ({len(value)} characters, at most {limit})")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise SubmissionError(f"{field} contains control characters")


def request_spec(request: SubmitRequest) -> ModelSpec:
    """The model spec a request names, its arguments checked by its backend. The dtype applies
    where the backend takes one (a form or command always sends one); a revision or adapter
    given to a backend without them is refused."""
    check_request(request)
    given = {"revision": request.revision, "adapter": request.adapter}
    args = {**request.args, **{k: v for k, v in given.items() if v}}
    try:
        return registry.resolve(request.model, args, defaults={"dtype": request.dtype})
    except MedboardError as exc:
        raise SubmissionError(str(exc)) from None


def check_request(request: SubmitRequest) -> None:
    """What a request holds besides its model: each field within its length and without
    control characters, a known track, model type, weight type and protocol."""
    if not request.model.strip():
        raise SubmissionError("no model given")
    for name in FIELD_LIMITS:
        check_field(name, getattr(request, name) or "")
    if request.track not in TRACKS:
        raise SubmissionError(f"unknown track '{request.track}' (choose from {', '.join(TRACKS)})")
    for name, value, known in (
        ("model type", request.model_type, MODEL_TYPES),
        ("weight type", request.weight_type or "original", WEIGHT_TYPES),
        ("protocol", request.protocol, FEDERATED_PROTOCOLS if request.entry else PROTOCOLS),
    ):
        if value not in known:
            raise SubmissionError(f"unknown {name} '{value}' (choose from {', '.join(known)})")
    if request.entry is not None and request.public:
        raise SubmissionError("entry details come from medboard fl submit, never from the web")
    if request.weight_type == "delta":
        raise SubmissionError(
            "weight type delta: medboard cannot add delta weights to their base model; submit "
            "the merged model (original) or a PEFT adapter (adapter)"
        )
    if request.weight_type == "adapter" and not request.adapter:
        raise SubmissionError("weight type adapter needs the adapter (its directory)")
    if request.weight_type == "original" and request.adapter:
        raise SubmissionError("an adapter is given: its weight type is adapter, not original")


def spec_of(job: Submission) -> ModelSpec:
    """The spec a submission was queued with, from its columns: the exact revision it was
    validated at (a content hash or a commit) in place of the one asked for."""
    columns = {"dtype": job.dtype, "revision": job.revision, "adapter": job.adapter}
    return registry.resolve(job.model, job.args or {}, defaults=columns)


def _link(submission_id: int, entry_id: int | None) -> str:
    if entry_id:
        return f"/model/{entry_id}"
    return f"/queue#submission-{submission_id}" if submission_id else "/queue"


def _protocol_of(entry: Entry) -> str:
    """The protocol an entry records ("generative/1" -> "generative"; none recorded: loglik, as
    leaderboard.ranking.entry_protocol reads an evaluated entry)."""
    recorded = (entry.extra or {}).get("protocol")
    return recorded.split("/", 1)[0] if isinstance(recorded, str) and recorded else "loglik"


def evaluated_entry(
    session: Session, revision: str, adapter_hash: str, dtype: str, track: str, protocol: str
) -> Entry | None:
    """The evaluated entry of this model identity on `track` by `protocol`, if there is one."""
    entries = session.scalars(
        select(Entry)
        .join(Model)
        .where(
            Model.revision == revision,
            Model.dtype == dtype,
            Model.adapter_hash == adapter_hash,
            Entry.track == track,
            Entry.origin == "evaluated",
        )
        .order_by(Entry.id)
    ).all()
    return next((entry for entry in entries if _protocol_of(entry) == protocol), None)


def _queued_error(text: str, dtype: str, existing: Submission) -> DuplicateSubmissionError:
    return DuplicateSubmissionError(
        f"{text} ({dtype}) is submitted already as #{existing.id} ({existing.status}): "
        f"see {_link(existing.id, existing.entry_id)}",
        existing.id,
        existing.entry_id,
    )


def _duplicate(
    database: Database, text: str, job: Submission, info: ModelInfo | None, exclude: int = 0
) -> None:
    """The friendly, fast refusal of a duplicate (the unique index on dedup_key is what makes
    the refusal atomic: _insert); `exclude`: the job itself, when a worker validates it."""
    with database.session() as session:
        existing = session.scalars(
            select(Submission).where(
                Submission.dedup_key == job.dedup_key,
                Submission.status.in_(ACTIVE),
                Submission.id != exclude,
            )
        ).first()
        if existing is not None:
            raise _queued_error(text, job.dtype, existing)
        if info is None:
            return
        entry = evaluated_entry(
            session, info.revision, info.adapter_hash, job.dtype, job.track, job.protocol
        )
        if entry is not None:
            raise DuplicateSubmissionError(
                f"{text} ({job.dtype}) is on the leaderboard already: see /model/{entry.id}",
                0,
                entry.id,
            )


def _raced(database: Database, text: str, job: Submission) -> DuplicateSubmissionError:
    """The refusal of a submission whose dedup key the unique index found taken: another
    request queued the same model between our check and our write."""
    with database.session() as session:
        existing = session.scalars(
            select(Submission).where(
                Submission.dedup_key == job.dedup_key, Submission.status.in_(ACTIVE)
            )
        ).first()
    if existing is None:  # it failed meanwhile
        return DuplicateSubmissionError(
            f"{text} ({job.dtype}) was submitted at the same time by another request: see /queue",
            0,
            None,
        )
    return _queued_error(text, job.dtype, existing)


def _validated(spec: ModelSpec, text: str, protocol: str, validate: Validator) -> ModelInfo:
    try:
        info = validate(spec)
    except MedboardError as exc:
        raise SubmissionError(f"{text} cannot be submitted: {exc}") from None
    if CAPABILITY[protocol] not in info.capabilities:
        how = "log-likelihood" if protocol == "loglik" else "generation"
        raise SubmissionError(
            f"{text} cannot be submitted: the {protocol} protocol scores by {how}, which this "
            "model does not give"
        )
    return info


def submit(
    database: Database, request: SubmitRequest, validate: Validator = registry.validate
) -> Submission:
    """Validate the model and queue it (pending); SubmissionError says why it cannot be, and
    DuplicateSubmissionError (one) which job or entry has it already."""
    return submit_all(database, [request], validate)[0]


def submit_all(
    database: Database, requests: Sequence[SubmitRequest], validate: Validator = registry.validate
) -> list[Submission]:
    """Queue several requests (a federated run under each protocol) in one transaction: each is
    validated and checked for duplicates first, and one refusal queues none of them. A model
    named by several requests is validated once."""
    seen: dict[str, ModelInfo] = {}

    def once(spec: ModelSpec) -> ModelInfo:
        if spec.text not in seen:
            seen[spec.text] = validate(spec)
        return seen[spec.text]

    prepared = [_prepare(database, request, once) for request in requests]
    try:
        with database.session() as session:
            lock_submissions(session)  # counted again under the lock: requests at one moment
            for job, _ in prepared:
                check_rate_in(session, job.submitter or "", job.origin)
            session.add_all([job for job, _ in prepared])
    except IntegrityError:
        raise _raced(database, prepared[0][1], prepared[0][0]) from None
    return [job for job, _ in prepared]


def _prepare(
    database: Database, request: SubmitRequest, validate: Validator
) -> tuple[Submission, str]:
    """The job a request makes (not written yet), with the model's text; refused as `submit`
    says."""
    deferred = False
    if request.public:
        check_request(request)  # before a path is looked at: no NUL byte reaches the OS
        model, adapter, deferred = public_model(request.model, request.adapter)
        request = replace(request, model=model, adapter=adapter)
    spec = request_spec(request)
    if request.public:
        check_public_args(spec.backend, request.args)
    origin = origin_key(request.origin) if request.public else None
    check_rate(database, request.submitter, origin)
    info = None if deferred else _validated(spec, request.model, request.protocol, validate)
    # A served model's precision is the server's: the entry says "served".
    dtype = str(spec.get("dtype") or (info.extra.get("dtype") if info else None) or "none")
    name = request.name.strip()
    # A Hub model queued unchecked (queue.public): the worker validates it first
    # (validate_queued), then keys it again by its commit.
    found = info.to_json() if info else {"kind": "hub", "location": spec.model, "validated": False}
    identity = info.revision if info else f"hub:{spec.model}@{request.revision}"
    adapter = spec.get("adapter")
    job = Submission(
        model=spec.text,
        revision=info.revision if info else request.revision,
        dtype=dtype,
        adapter=adapter,
        track=request.track,
        submitter=request.submitter,
        status="pending",
        approved=not approval_required(),
        info=found
        | ({"name": name} if name else {})
        | ({"entry": dict(request.entry)} if request.entry else {})
        | ({"limit": request.limit} if request.limit else {}),
        args={k: v for k, v in spec.args if k not in COLUMNS} or None,
        dedup_key=Submission.key_of(
            identity, info.adapter_hash if info else "", dtype, request.track, request.protocol
        ),
        protocol=request.protocol,
        model_type=request.model_type,
        weight_type=request.weight_type or ("adapter" if adapter else "original"),
        description=request.description.strip() or None,
        origin=origin,
    )
    _duplicate(database, spec.text, job, info)
    return job, spec.text


def validate_queued(
    database: Database, job: Submission, worker: str, validate: Validator = registry.validate
) -> Submission | None:
    """Validate a public Hub submission (queued unchecked: queue.public) in the worker that
    claimed it: the download happens here, never in a web request. Returns the job as validated
    (exact revision, what validation found, the dedup key of both), or None when the job is no
    longer this worker's; a SubmissionError says why it cannot be evaluated."""
    spec = spec_of(job)
    cap = public_max_parameters()  # known before the download (backends.hf_hub)
    if cap is not None and "max_parameters" in registry.provider(spec.backend).args:
        spec = spec.with_args({"max_parameters": cap})
    refused = SubmissionError(NOT_ON_HUB.format(model=job.model))
    if os.path.lexists(spec.model):  # a path on this machine: never the public's to evaluate
        raise refused
    try:
        info = validate(spec)
    except TransientError:
        raise  # the Hub is down: the job waits and is validated again (worker._wait_or_fail)
    except HubUnreachableError:
        raise refused from None
    except MedboardError as exc:
        raise SubmissionError(f"{job.model} cannot be evaluated: {exc}") from None
    if info.kind != "hub":
        raise refused
    info = _validated(spec, job.model, job.protocol, lambda _: info)
    checked = Submission(
        dtype=job.dtype, track=job.track, protocol=job.protocol,
        dedup_key=Submission.key_of(
            info.revision, info.adapter_hash, job.dtype, job.track, job.protocol
        ),
    )  # fmt: skip
    _duplicate(database, job.model, checked, info, exclude=job.id)
    name = job.info.get("name")
    values = {
        "revision": info.revision,
        "info": info.to_json() | ({"name": name} if name else {}),
        "dedup_key": checked.dedup_key,
    }
    try:
        if not update_claimed(database, job.id, worker, **values):
            return None
    except IntegrityError:
        raise _raced(database, job.model, checked) from None
    return get_submission(database, job.id)


def list_submissions(database: Database) -> list[Submission]:
    """Every submission, newest first."""
    with database.session() as session:
        return list(session.scalars(select(Submission).order_by(Submission.id.desc())).all())
