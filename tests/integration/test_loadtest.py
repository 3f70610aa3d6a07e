"""bench/loadtest.py: wrk's report is read right, and a tiny run goes end to end.

The end-to-end run seeds 40 models into a temporary SQLite file, starts `medboard serve`, runs
wrk for a second per endpoint (the board, a model page, a search, and many model pages and
searches in turn) and stops the server; it checks the report, not the speed (the numbers that
count come from the full run on PostgreSQL: docs/lab-notes/loadtest.md).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench_scripts import load_bench

REPO = Path(__file__).parents[2]
WRK_OUTPUT = """\
Running 30s test @ http://127.0.0.1:8000/leaderboard/open_medical
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.31ms    5.02ms  98.12ms   80.00%
    Req/Sec     2.05k   210.33     2.60k    70.00%
  Latency Distribution
     50%   11.94ms
     75%   14.10ms
     90%   17.25ms
     99%   32.03ms
  122853 requests in 30.10s, 28.10GB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   4081.50
Transfer/sec:    955.80MB
"""


def loadtest() -> ModuleType:
    return load_bench("loadtest")


def test_wrk_report_is_parsed() -> None:
    parsed = loadtest().parse_wrk(WRK_OUTPUT)
    assert parsed["requests_per_s"] == 4081.5
    assert parsed["p50_ms"] == 11.94 and parsed["p99_ms"] == 32.03
    assert parsed["p75_ms"] == 14.1 and parsed["p90_ms"] == 17.25
    assert parsed["mean_ms"] == 12.31 and parsed["max_ms"] == 98.12
    assert parsed["requests"] == 122853 and parsed["read"] == "28.10GB"
    assert parsed["non_2xx"] == 3 and parsed["socket_errors"] == 2
    assert loadtest()._ms("850.00us") == 0.85 and loadtest()._ms("1.20s") == 1200.0


def test_latencies_in_seconds_are_read() -> None:
    # wrk pads a latency in seconds with a space ("2.43s "); the model page ran that slow once
    slow = WRK_OUTPUT.replace("     99%   32.03ms", "     99%    2.43s ")
    assert loadtest().parse_wrk(slow)["p99_ms"] == 2430.0


def test_the_views_of_each_set() -> None:
    views = load_bench("loadtest_views")
    ids = list(range(1, 1001))
    assert views.single_paths("board", ids) == list(views.BOARD)
    assert views.single_paths("model", ids) == ["/model/501", "/api/model/501"]
    assert views.single_paths("search", ids) == [
        "/leaderboard/open_medical?q=llama",
        "/api/leaderboard/open_medical?q=llama",
    ]
    pages = views.rotation_paths("model", ids)
    assert len(pages) == len(set(pages)) == 200
    assert pages[:2] == ["/model/1", "/api/model/6"]
    searches = views.rotation_paths("search", ids)
    assert len(searches) == 120 == len(set(searches))
    assert searches[1] == "/api/leaderboard/open_medical?q=mistral"
    assert "/leaderboard/open_medical?q=llama+0.5b" in searches
    assert views.rotation_paths("board", ids) == []


def test_synthetic_models_are_distinct_and_complete_enough() -> None:
    models = loadtest().synthetic_models(1000)
    assert len({m["model"]["name"] for m in models}) == 1000
    full = [m for m in models if len(m["scores"]) == 11]
    assert 900 < len(full) < 1000  # a few partial entries, unranked on the board
    assert max(m["model"]["parameters"] for m in models) > 2**31  # 64-bit parameter counts


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_a_tiny_load_test_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    command = [sys.executable, str(REPO / "bench" / "loadtest.py")]
    command += ["--db", f"sqlite:///{tmp_path}/load.sqlite", "--models", "40"]
    command += ["--duration", "1", "--warmup", "0", "--connections", "4", "--threads", "1"]
    command += ["--target-p99-ms", "100000", "--out", str(out)]
    command += ["--set", "board", "--set", "model", "--set", "search"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["seeded"]["entries"] == 40 and report["seeded"]["task_scores"] > 400
    entry = report["results"][2]["endpoint"].removeprefix("/model/")
    assert [r["endpoint"] for r in report["results"]] == [
        "/leaderboard/open_medical",
        "/api/leaderboard/open_medical",
        f"/model/{entry}",
        f"/api/model/{entry}",
        "/leaderboard/open_medical?q=llama",
        "/api/leaderboard/open_medical?q=llama",
        "model: 40 views in turn",
        "search: 120 views in turn",
    ]
    assert set(report["first_render_ms"]) == {"model", "search"}
    for result in report["results"]:
        assert result["requests_per_s"] > 0 and result["p99_ms"] > 0
        assert result["non_2xx"] == 0 and result["socket_errors"] == 0
    assert "p99 ms" in done.stdout
