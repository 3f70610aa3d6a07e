"""How many submissions may be made in an hour: per submitter, and per client address.

The submitter is what a request says it is: anyone may leave it empty or change it between
requests, so a public submission (the web form and API) is also counted by the client's address
as the web server saw it (behind a reverse proxy, the address the proxy forwards: uvicorn takes
X-Forwarded-For from the addresses in FORWARDED_ALLOW_IPS, 127.0.0.1 by default). The address
is stored hashed (origin_key), never shown; an IPv6 address counts as its /64 network, which one
client holds whole. The operator's `medboard submit` has no address and is counted by submitter
only.

The count and the insert of a submission run in one transaction that holds the queue's
submission lock (lock_submissions), so that requests made at the same moment cannot all pass a
count none of them is in yet.
"""

import hashlib
import ipaddress
import os
from datetime import timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from medboard.errors import SubmissionError
from medboard.results.db import Database, Submission, utcnow

LIMIT_ENV = "MEDBOARD_SUBMIT_LIMIT"
WINDOW = timedelta(hours=1)


def rate_limit() -> int:
    """Submissions allowed per submitter, and per client address, per hour
    (MEDBOARD_SUBMIT_LIMIT, default 10)."""
    text = os.environ.get(LIMIT_ENV, "10").strip()
    try:
        limit = int(text)
    except ValueError:
        limit = -1
    if limit < 0:
        raise SubmissionError(f"{LIMIT_ENV}={text!r} is not a number of submissions (0 or more)")
    return limit


def origin_key(address: str) -> str | None:
    """What the queue stores of a client's address: a hash of it (of its /64 network for
    IPv6), the same for every request from that client; None without an address."""
    address = address.strip()
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # not an IP address (a test client's name, a Unix socket): as given
        shown = address
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        shown = (
            str(ipaddress.ip_network(f"{ip}/64", strict=False))
            if isinstance(ip, ipaddress.IPv6Address)
            else str(ip)
        )
    return hashlib.sha256(f"medboard-origin\0{shown}".encode()).hexdigest()[:32]


# The PostgreSQL advisory lock of the writers of new submissions (any 64-bit number of our own).
LOCK_KEY = 0x6D6564626F617264  # "medboard"


def lock_submissions(session: Session) -> None:
    """Hold the queue's submission lock until `session`'s transaction ends: another writer of
    new submissions waits, so a count read after this is still true when this one commits.
    PostgreSQL: a transaction-level advisory lock; SQLite: its write lock, taken by a write that
    changes nothing (the busy timeout waits for it)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif dialect == "sqlite":
        session.execute(text("UPDATE submissions SET id = id WHERE 0"))


def _recent(session: Session, column: object, value: str) -> int:
    since = utcnow() - WINDOW
    found = session.scalar(
        select(func.count())
        .select_from(Submission)
        .where(column == value, Submission.created_at >= since)
    )
    return int(found or 0)


def check_rate_in(session: Session, submitter: str, origin: str | None) -> None:
    """Refuse a submission when its submitter, or its client address, made the hourly limit's
    worth of submissions already (counted in `session`: under lock_submissions, at insert)."""
    limit = rate_limit()
    counted = [(f"from {submitter}", Submission.submitter, submitter)] if submitter else []
    if origin:
        counted.append(("from your address", Submission.origin, origin))
    for who, column, value in counted:
        recent = _recent(session, column, value)
        if recent >= limit:
            raise SubmissionError(
                f"rate limit: {recent} submissions {who} in the last hour "
                f"(at most {limit}); try again later"
            )


def check_rate(database: Database, submitter: str, origin: str | None) -> None:
    """check_rate_in, early: before a submission's model is looked at (its download, a
    server's answer), so that a refused request costs nothing."""
    with database.session() as session:
        check_rate_in(session, submitter, origin)
