"""The hourly rate limit: per submitter, and per client address for public submissions."""

import threading
from pathlib import Path

import pytest

from medboard.errors import SubmissionError
from medboard.queue.limits import origin_key, rate_limit
from medboard.queue.submissions import SubmitRequest, list_submissions, submit
from medboard.results.db import Database, open_database
from tests.queue.databases import KINDS, database_url


@pytest.fixture()
def database(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path / 'limits.db'}")


def test_a_clients_addresses_share_one_key() -> None:
    assert origin_key("203.0.113.5") == origin_key(" 203.0.113.5 ")
    assert origin_key("203.0.113.5") != origin_key("203.0.113.6")
    # one IPv6 client holds a /64 whole: any address in it is that client
    assert origin_key("2001:db8:0:1::1") == origin_key("2001:db8:0:1:ffff::9")
    assert origin_key("2001:db8:0:1::1") != origin_key("2001:db8:0:2::1")
    assert origin_key("::ffff:203.0.113.5") == origin_key("203.0.113.5")
    assert origin_key("testclient") != origin_key("203.0.113.5")
    assert origin_key("") is None
    key = origin_key("203.0.113.5") or ""
    assert len(key) == 32 and "203" not in key  # stored hashed


@pytest.mark.parametrize("value", ["ten", "-1", "1.5"])
def test_a_bad_limit_is_one_line(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDBOARD_SUBMIT_LIMIT", value)
    with pytest.raises(SubmissionError, match=f"MEDBOARD_SUBMIT_LIMIT='{value}' is not a num"):
        rate_limit()


def test_an_anonymous_public_client_is_limited_by_its_address(
    database: Database, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty submitter was never counted: a public client that left it empty could queue
    without end."""
    monkeypatch.setenv("MEDBOARD_SUBMIT_LIMIT", "2")

    def public(model: str, address: str, submitter: str = "") -> SubmitRequest:
        return SubmitRequest(model=model, public=True, origin=address, submitter=submitter)

    submit(database, public("org/model-1", "203.0.113.5"))
    submit(database, public("org/model-2", "203.0.113.5", submitter="alice"))
    for submitter in ("", "mallory"):  # a new name does not help
        with pytest.raises(
            SubmissionError, match=r"rate limit: 2 submissions from your address in the last hour"
        ):
            submit(database, public("org/model-3", "203.0.113.5", submitter))
    submit(database, public("org/model-3", "203.0.113.6"))  # another client
    # the operator's medboard submit has no address: counted by submitter alone
    submit(database, SubmitRequest(model="fake:bias=A"))
    jobs = list_submissions(database)
    assert len(jobs) == 4
    assert [job.origin for job in sorted(jobs, key=lambda job: job.id)] == [
        origin_key("203.0.113.5"), origin_key("203.0.113.5"), origin_key("203.0.113.6"), None,
    ]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_submissions_made_at_the_same_moment_are_counted_together(
    kind: str, tmp_path: Path, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six requests from one address, each past the early count before any is written (held
    at a barrier just before the insert): only the limit's worth are queued, the others get the
    rate limit's line."""
    from medboard.queue import submissions

    monkeypatch.setenv("MEDBOARD_SUBMIT_LIMIT", "2")
    requests = 6
    barrier = threading.Barrier(requests, timeout=30)
    checked = submissions._duplicate

    def at_once(*args: object, **kwargs: object) -> None:
        checked(*args, **kwargs)  # type: ignore[arg-type]
        barrier.wait()  # every request has been counted; now all insert together

    monkeypatch.setattr(submissions, "_duplicate", at_once)
    with database_url(kind, tmp_path) as url:
        database = open_database(url)
        outcomes: list[str] = []

        def one(n: int) -> None:
            request = SubmitRequest(model=f"org/model-{n}", public=True, origin="203.0.113.5")
            try:
                submit(database, request)
                outcomes.append("queued")
            except SubmissionError as exc:
                outcomes.append(str(exc))

        threads = [threading.Thread(target=one, args=(n,)) for n in range(requests)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        limited = (
            "rate limit: 2 submissions from your address in the last hour (at most 2); "
            "try again later"
        )
        assert sorted(outcomes) == ["queued"] * 2 + [limited] * (requests - 2)
        assert len(list_submissions(database)) == 2
        database.engine.dispose()
