"""The landing page: the queue's current jobs and each track's first rows, and its JSON twin."""

from datetime import timedelta

from fastapi.testclient import TestClient

from medboard.results.db import Database, Submission, open_database, utcnow
from medboard.web.app import create_app
from medboard.web.routes_home import TOP


def _jobs(database: Database) -> None:
    progress = {"tasks_done": 1, "tasks": 9, "task": "medmcqa", "done": 100, "total": 4183,
                "eta_seconds": None, "job_done": 1373, "job_total": 7045,
                "job_eta_seconds": None}  # fmt: skip
    with database.session() as session:
        session.add_all([
            Submission(model="/models/demo.gguf", dtype="bfloat16", track="open_medical",
                       status="pending", info={"name": "SmolLM2 demo"},
                       created_at=utcnow() - timedelta(minutes=2)),
            Submission(model="/models/busy", dtype="bfloat16", track="open_medical",
                       status="running", progress=progress, worker="w1"),
            Submission(model="/models/done", dtype="bfloat16", track="open_medical",
                       status="finished"),
            Submission(model="/models/broken", dtype="bfloat16", track="open_medical",
                       status="failed", reason="no such file"),
        ])  # fmt: skip


def test_home_shows_the_queue_and_every_track(client: TestClient, database: Database) -> None:
    _jobs(database)
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 200  # a page of its own, no longer a redirect
    html = response.text
    # the queue's pending and running jobs, the running one first, with the job's progress
    queue = html[html.index('id="queue-now"') : html.index("</section>")]
    assert queue.index("/models/busy") < queue.index("SmolLM2 demo")
    assert "1 running, 1 pending" in queue
    assert "1,373/7,045 questions (19.5%)" in queue and "estimating…" in queue
    assert "waiting for a worker" in queue
    assert "2 min ago" in queue
    assert "/models/done" not in html and "/models/broken" not in html
    # the tracks with entries, their first rows in rank order, linking to the whole board
    assert 'id="track-open_medical"' in html and 'id="track-flowertune_medical"' in html
    assert html.index("alpha-7b") < html.index("beta-1.5b")
    assert "ZeroOne.AI" in html and "Massimo R. Scamarcia" in html
    assert 'href="/leaderboard/flowertune_medical"' in html
    # the tracks still empty, listed apart
    empty = html[html.index('id="empty-tracks"') :]
    assert "Multilingual medical" in empty and "Open Medical-LLM" not in empty
    assert 'href="/about"' in html


def test_the_home_twin_carries_the_same_numbers(client: TestClient, database: Database) -> None:
    _jobs(database)
    data = client.get("/api/overview").json()
    active = data["queue"]["active"]
    assert [j["model"] for j in active] == ["/models/busy", "/models/demo.gguf"]
    assert active[0]["job_progress"] == {
        "done": 1373, "total": 7045, "fraction": 0.1949, "eta_seconds": None
    }  # fmt: skip
    assert data["queue"]["counts"] == {"running": 1, "pending": 1}
    tracks = {t["track"]: t for t in data["tracks"]}
    flowertune = tracks["flowertune_medical"]
    assert (flowertune["entries"], flowertune["ranked"]) == (3, 3)
    assert [r["model"].split(" / ")[0] for r in flowertune["top"]] == [
        "ZeroOne.AI", "FL-finetune-JB-DC", "Massimo R. Scamarcia"
    ]  # fmt: skip
    assert flowertune["top"][0]["average"] == 0.6357
    open_medical = tracks["open_medical"]
    assert len(open_medical["top"]) == TOP
    ranks = [r["rank"] for r in open_medical["top"]]
    assert ranks == sorted(ranks)
    assert tracks["multilingual_medical"]["entries"] == 0
    assert data["entries"] == sum(t["entries"] for t in data["tracks"])
    assert "/api/overview" in [e["path"] for e in client.get("/api").json()["endpoints"]]


def test_an_empty_board_says_what_to_do(tmp_path) -> None:
    client = TestClient(create_app(open_database(f"sqlite:///{tmp_path / 'empty.db'}")))
    html = client.get("/").text
    assert "Nothing is waiting or running" in html and 'href="/submit"' in html
    assert "Tracks without entries yet" in html
    assert client.get("/api/overview").json()["entries"] == 0
