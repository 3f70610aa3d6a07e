"""Admin routes: refused without the token, and each action shows on the board at once."""

from fastapi.testclient import TestClient
from sqlalchemy import select

from medboard.results.db import Database, Entry, Submission
from medboard.web.app import create_app
from tests.web.conftest import entry_ids

TOKEN = {"Authorization": "Bearer s3cret"}


def names(client: TestClient) -> list[str]:
    return [row["model"] for row in client.get("/api/leaderboard/open_medical").json()["rows"]]


def test_admin_is_off_without_a_token(database: Database, evaluated_id: int) -> None:
    client = TestClient(create_app(database))
    response = client.post(f"/api/admin/entries/{evaluated_id}/hide", headers=TOKEN)
    assert response.status_code == 403 and "admin actions are off" in response.json()["detail"]


def test_hide_show_and_delete(database: Database, evaluated_id: int) -> None:
    client = TestClient(create_app(database, admin_token="s3cret"))
    alpha = entry_ids(database)["alpha-7b"]
    assert "alpha-7b" in names(client)
    wrong = client.post(f"/api/admin/entries/{alpha}/hide", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401
    assert client.post(f"/api/admin/entries/{alpha}/hide").status_code == 401
    assert client.post(f"/api/admin/entries/{alpha}/hide", headers=TOKEN).json()["hidden"]
    assert "alpha-7b" not in names(client)  # the cached board changed at once
    shown = client.post(f"/api/admin/entries/{alpha}/hide?hidden=false", headers=TOKEN)
    assert shown.json() == {"id": alpha, "hidden": False}
    assert "alpha-7b" in names(client)
    assert client.delete(f"/api/admin/entries/{alpha}", headers=TOKEN).json()["deleted"]
    assert "alpha-7b" not in names(client)
    with database.session() as session:
        assert session.get(Entry, alpha) is None
    assert client.delete(f"/api/admin/entries/{alpha}", headers=TOKEN).status_code == 404


def test_approve_and_rerun(database: Database, evaluated_id: int) -> None:
    client = TestClient(create_app(database, admin_token="s3cret"))
    with database.session() as session:
        job = Submission(
            model="m", revision="r", dtype="float32", track="open_medical", approved=False,
            status="failed", reason="boom",
        )  # fmt: skip
        session.add(job)
    approved = client.post(f"/api/admin/submissions/{job.id}/approve", headers=TOKEN)
    assert approved.json() == {"id": job.id, "approved": True, "status": "failed"}
    rerun = client.post(f"/api/admin/submissions/{job.id}/rerun", headers=TOKEN)
    assert rerun.json() == {"id": job.id, "status": "pending"}
    again = client.post(f"/api/admin/submissions/{job.id}/rerun", headers=TOKEN)
    assert again.status_code == 409 and "nothing to rerun" in again.json()["detail"]
    assert client.post("/api/admin/submissions/999/approve", headers=TOKEN).status_code == 404
    with database.session() as session:
        assert session.scalars(select(Submission.status)).one() == "pending"


def test_the_token_needs_the_bearer_scheme(database: Database, evaluated_id: int) -> None:
    """A bare token (no `Bearer `) was accepted: every form but `Bearer <token>` is a 401 with
    one line, and nothing changes."""
    client = TestClient(create_app(database, admin_token="s3cret"))
    alpha = entry_ids(database)["alpha-7b"]
    for header in (
        "s3cret",  # the bare token
        "Basic s3cret",
        "Token s3cret",
        "Bearers3cret",
        "Bearer  s3cret",
        "Bearer s3cre",
        "Bearer s3cretx",
        "Bearer ",
        "Bearer",
        "",
        "s3cret Bearer",
    ):
        response = client.post(
            f"/api/admin/entries/{alpha}/hide", headers={"Authorization": header}
        )
        assert response.status_code == 401, header
        detail = response.json()["detail"]
        assert "\n" not in detail and "Authorization: Bearer <token>" in detail
        assert response.headers["www-authenticate"] == "Bearer"
    assert "alpha-7b" in names(client)  # nothing was hidden
    for header in ("Bearer s3cret", "bearer s3cret", "BEARER s3cret"):  # RFC 7235: any case
        response = client.post(
            f"/api/admin/entries/{alpha}/hide?hidden=false", headers={"Authorization": header}
        )
        assert response.status_code == 200, header


def test_odd_authorization_headers_are_401(database: Database, evaluated_id: int) -> None:
    client = TestClient(create_app(database, admin_token="s3cret"))
    alpha = entry_ids(database)["alpha-7b"]
    for header in (b"Bearer s3cr\xe9t", b"Bearer " + b"x" * 10_000, b"Bearer \xff\x00"):
        response = client.post(
            f"/api/admin/entries/{alpha}/hide", headers={"Authorization": header}
        )
        assert response.status_code == 401, header[:20]
    assert "alpha-7b" in names(client)
