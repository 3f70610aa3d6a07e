"""End to end in a real browser: headless Chromium against a real `medboard serve` process.

Load the leaderboard, sort, filter, search, open a model page, submit a model from a local
path, watch it go pending -> running -> finished on the queue page and appear in the ranking;
open a fresh `medboard serve` as the main job starts it (the landing page, the queue, About).
Screenshots of the pages go to $MEDBOARD_SCREENSHOTS (docs/screenshots when refreshing the
committed ones), else to the test's temporary folder.
Needs Debian's chromium (/usr/bin/chromium, installed by .ci/run) and playwright (dev extra);
skipped when either is missing.
"""

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from medboard.leaderboard.ranking import track_spec
from medboard.paths import shared_benchmarks
from medboard.tasks import REGISTRY
from tests.conftest import import_fixture_tasks
from tests.servers import medboard_serve

CHROMIUM = os.environ.get("MEDBOARD_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
OPEN = (
    "model,track,model_type,parameters,dtype,medqa_4options,medmcqa,pubmedqa,mmlu_anatomy,"
    "mmlu_clinical_knowledge,mmlu_college_biology,mmlu_college_medicine,mmlu_medical_genetics,"
    "mmlu_professional_medicine\n"
    "org/big-70b,open_medical,instruct,70000000000,bfloat16,80,70,75,80,80,80,80,80,80\n"
    "org/mid-8b,open_medical,pretrained,8000000000,float16,50,60,70,60,60,60,60,60,60\n"
    "lab/tiny-1b,open_medical,instruct,1000000000,bfloat16,30,90,40,30,30,30,30,30,30\n"
)
FLOWERTUNE = (
    "rank,team,base_model,comm_cost_gb,average,pubmedqa,medmcqa,medqa,careqa,date\n"
    "1,ZeroOne.AI,Llama3.1-Aloe-Beta-8B,2.0,63.57,74.80,55.39,59.31,64.79,2026-01-14\n"
)


def _needs_browser() -> None:
    """Skip without Debian's chromium or playwright."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright")


@pytest.fixture()
def server(medboard_home: Path, tmp_path: Path) -> Iterator[str]:
    _needs_browser()
    import_fixture_tasks(medboard_home)
    (tmp_path / "open.csv").write_text(OPEN)
    (tmp_path / "flowertune.csv").write_text(FLOWERTUNE)
    yield from _serve(medboard_home, tmp_path)


def _serve(
    medboard_home: Path,
    tmp_path: Path,
    *more: Path,
    tables: Sequence[Path] | None = None,
    extra: Sequence[str] = (),
    lease: float = 30,
) -> Iterator[str]:
    """A real `medboard serve` on tmp_path/board.db, with the published tables of tmp_path (and
    `more`), or `tables` alone; `extra`: more of its options (--submit, say)."""
    if tables is None:
        tables = [tmp_path / "open.csv", tmp_path / "flowertune.csv", *more]
    options = [part for table in tables for part in ("--published", str(table))]
    options += ["--allow-data-mismatch", "--lease", str(lease), *extra]
    yield from medboard_serve(medboard_home, tmp_path, options)


def _screenshot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("MEDBOARD_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _models(page) -> list[str]:
    return page.locator("#board tbody td.model a").all_inner_texts()


def test_leaderboard_in_a_real_browser(server: str, tiny_model: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)

        # the landing page: each track's first rows; the track's heading opens its board
        page.goto(server + "/")
        top = page.locator("#track-open_medical td.model a").all_inner_texts()
        assert top == ["org/big-70b", "org/mid-8b", "lab/tiny-1b"]
        page.locator("#track-open_medical h2 a").click()
        page.wait_for_url("**/leaderboard/open_medical")

        # the board, ranked by average
        assert _models(page) == ["org/big-70b", "org/mid-8b", "lab/tiny-1b"]

        # sort by a task column by clicking its header: medmcqa puts tiny-1b (90) first
        page.locator("#board thead a.sort", has_text="medmcqa").first.click()
        page.wait_for_url("**sort=medmcqa**")
        first = _models(page)[0]
        if first != "lab/tiny-1b":  # first click sorted ascending: click again
            page.locator("#board thead a.sort", has_text="medmcqa").first.click()
            page.wait_for_load_state()
        assert _models(page)[0] == "lab/tiny-1b"
        assert "sort=medmcqa" in page.url  # the view lives in the URL

        # filter by model type (the checkbox applies itself), then search
        page.goto(server + "/leaderboard/open_medical")
        page.locator("input[name=type][value=pretrained]").check()
        page.wait_for_url("**type=pretrained**")
        assert _models(page) == ["org/mid-8b"]
        page.goto(server + "/leaderboard/open_medical")
        page.fill("input[name=q]", "lab")
        page.press("input[name=q]", "Enter")
        page.wait_for_url("**q=lab**")
        assert _models(page) == ["lab/tiny-1b"]

        # a model page
        page.click("text=lab/tiny-1b")
        page.wait_for_url("**/model/*")
        expect(page.locator("h1")).to_contain_text("lab/tiny-1b")
        expect(page.locator("body")).to_contain_text("published")

        # submit the tiny model from its local path; the in-process worker evaluates it
        page.goto(server + "/submit")
        page.fill("input[name=model]", str(tiny_model))
        page.select_option("select[name=dtype]", "float32")
        page.click("button[type=submit]")
        page.wait_for_url("**/queue**")
        row = page.locator("tr[id^=submission-]").first
        seen = set()
        deadline = time.time() + 240
        while time.time() < deadline:
            seen.add(row.get_attribute("data-status"))
            if "finished" in seen or "failed" in seen:
                break
            time.sleep(0.3)
            page.reload()
            row = page.locator("tr[id^=submission-]").first
        assert "finished" in seen, f"statuses seen: {seen}; {row.inner_text()}"
        assert seen & {"pending", "running"}, f"never saw it queued or running: {seen}"

        # it is ranked now, among the published entries
        page.goto(server + "/leaderboard/open_medical")
        assert str(tiny_model) in _models(page)
        assert len(_models(page)) == 4
        _screenshot(page, "leaderboard_after_submission", tmp_path)

        # its model page: scores with intervals, provenance, the samples
        page.locator("#board tbody td.model a", has_text=str(tiny_model)).click()
        page.wait_for_url("**/model/*")
        expect(page.locator("body")).to_contain_text("medqa_4options")
        _screenshot(page, "model_page_submitted", tmp_path)
        browser.close()


@pytest.fixture()
def populated(medboard_home: Path, tmp_path: Path) -> Iterator[str]:
    """A board with published entries and three evaluated ones (per-question records, rotated
    options): rank intervals, calibration and robustness have something to show."""
    _needs_browser()
    from medboard.results.db import open_database
    from tests.web.test_insights import _evaluated

    import_fixture_tasks(medboard_home)
    (tmp_path / "open.csv").write_text(OPEN)
    (tmp_path / "flowertune.csv").write_text(FLOWERTUNE)
    database = open_database(f"sqlite:///{tmp_path / 'board.db'}")
    for name, options in [
        ("lab/fair-0.5b", ""),
        ("lab/letter-a-0.5b", "bias=A"),
        ("x/y", "batch=3"),
    ]:
        _evaluated(database, options, name, (1, 2, 3))
    database.engine.dispose()
    yield from _serve(medboard_home, tmp_path)


def test_screenshots_of_a_populated_board(populated: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(populated + "/leaderboard/open_medical")
        expect(page.locator("#board thead")).to_contain_text("Rank 95%")
        assert len(_models(page)) == 6
        _screenshot(page, "leaderboard", tmp_path)
        page.locator("#board tbody td.model a", has_text="lab/letter-a-0.5b").click()
        page.wait_for_url("**/model/*")
        expect(page.locator("#robustness")).to_contain_text("A 100%")
        expect(page.locator("#calibration")).to_be_visible()
        _screenshot(page, "model_page", tmp_path)
        browser.close()


def test_a_served_model_through_the_form(server: str, tmp_path: Path) -> None:
    """A model behind llama.cpp's server (a real one, tests/servers.py), submitted through the
    form, evaluated by the worker and ranked; its page says it was served."""
    from playwright.sync_api import expect, sync_playwright

    from tests.integration.test_parity_subset import smollm2
    from tests.servers import llamacpp_server

    with llamacpp_server(smollm2(), tmp_path) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(server + "/submit")
        page.fill("input[name=model]", "openai:smollm2")
        page.fill("input[name=args]", f"base_url={url}")
        page.fill("input[name=name]", "SmolLM2 on llama.cpp")
        page.click("button[type=submit]")
        page.wait_for_url("**/queue**")
        deadline = time.time() + 300
        status = None
        while time.time() < deadline and status not in ("finished", "failed"):
            time.sleep(0.5)
            page.reload()
            status = page.locator("tr[id^=submission-]").first.get_attribute("data-status")
        row = page.locator("tr[id^=submission-]").first
        assert status == "finished", row.inner_text()
        page.goto(server + "/leaderboard/open_medical")
        assert "SmolLM2 on llama.cpp" in _models(page)
        page.locator("#board tbody td.model a", has_text="SmolLM2 on llama.cpp").click()
        page.wait_for_url("**/model/*")
        expect(page.locator("body")).to_contain_text("llama.cpp-0.3.36, model smollm2")
        expect(page.locator("body")).to_contain_text("no file hash")
        browser.close()


FLOWERTUNE_ROWS = FLOWERTUNE + (
    "2,FL-finetune-JB-DC,Bio-Medical-Llama-3-8B,1.6,63.12,70.40,60.93,65.82,55.36,2025-04-12\n"
    "13,Massimo R. Scamarcia,Qwen2.5-7B-Instruct,45.1,49.07,44.60,39.06,55.46,57.16,2024-11-23\n"
)


def _medboard(home: Path, *args: str) -> None:
    command = [sys.executable, "-c", "from medboard.cli import main; main()", *args]
    env = {**os.environ, "MEDBOARD_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture()
def not_comparable(medboard_home: Path, tmp_path: Path) -> Iterator[str]:
    """A board with what must not be ranked as if comparable (issue 33): an open_medical entry
    recorded by `medboard eval --record --limit 1`, and a log-likelihood entry on the
    flowertune_medical board, whose published rows were scored generatively."""
    _needs_browser()
    import_fixture_tasks(medboard_home)
    (tmp_path / "open.csv").write_text(OPEN)
    (tmp_path / "flowertune.csv").write_text(FLOWERTUNE_ROWS)
    db = f"sqlite:///{tmp_path / 'board.db'}"
    common = ["eval", "--allow-data-mismatch", "--record", "--db", db]
    _medboard(medboard_home, *common, "--model", "fake", "--suite", "open_medical",
              "--limit", "1", "--name", "lab/limited-run")  # fmt: skip
    _medboard(medboard_home, *common, "--model", "fake:bias=A", "--suite", "flowertune_medical",
              "--name", "lab/loglik-entry")  # fmt: skip
    yield from _serve(medboard_home, tmp_path)


def test_entries_are_ranked_only_where_comparable(not_comparable: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)

        # the --limit entry: after the ranked ones, under "Not ranked", marked, no rank or average
        page.goto(not_comparable + "/leaderboard/open_medical")
        assert _models(page) == ["org/big-70b", "org/mid-8b", "lab/tiny-1b", "lab/limited-run"]
        limited = page.locator("#board tbody tr[data-entry-id]", has_text="lab/limited-run")
        expect(limited.locator("td").nth(0)).to_have_text("—")
        expect(limited.locator("td.avg")).to_have_text("—")
        expect(limited.locator(".partial-mark")).to_be_visible()
        expect(limited.locator(".partial-mark")).to_have_text("partial: 1 question per task")
        unranked = page.locator("#board tbody tr.section[data-ranking=unranked]")
        expect(unranked).to_be_visible()
        expect(unranked).to_contain_text("Not ranked")
        ranks = page.locator("#board tbody tr[data-entry-id] td:first-child").all_inner_texts()
        assert ranks == ["1", "2", "3", "—"]
        _screenshot(page, "leaderboard_partial_entry", tmp_path)

        # the log-likelihood entry on the FlowerTune board: a ranking of its own, said on the page
        page.goto(not_comparable + "/leaderboard/flowertune_medical")
        rows = page.locator("#board tbody tr")
        kinds = [
            rows.nth(i).get_attribute("data-ranking") or rows.nth(i).get_attribute("data-entry-id")
            for i in range(rows.count())
        ]
        assert kinds[0] == "flowertune" and kinds[4] == "loglik", kinds
        assert len(kinds) == 6  # 2 section rows, 3 published rows, then the loglik entry
        expect(rows.nth(4)).to_contain_text("apart from the flowertune ranking")
        expect(rows.nth(5)).to_contain_text("lab/loglik-entry")
        expect(page.locator("p.warning")).to_have_count(0)
        expect(page.locator("p.lead")).to_contain_text("ranked separately")

        # "all protocols together": one ranking, and the page warns that it mixes protocols
        page.select_option("select[name=ranking]", "all")
        page.wait_for_url("**ranking=all**")
        warning = page.locator("p.warning")
        expect(warning).to_be_visible()
        expect(warning).to_contain_text("mixes evaluation protocols")
        expect(warning).to_contain_text("flowertune (3 entries), loglik (1 entry)")
        _screenshot(page, "leaderboard_mixed_protocols", tmp_path)
        browser.close()


# SmolLM2-135M-Instruct and Gemma-3-270M on the whole multilingual track in bfloat16, as
# measured for docs/reference/tasks.md (medboard eval --suite multilingual_medical --record), in
# percent.
MULTILINGUAL = Path(__file__).parent / "fixtures" / "multilingual_board.csv"


@pytest.fixture()
def multilingual(medboard_home: Path, tmp_path: Path) -> Iterator[str]:
    _needs_browser()
    import_fixture_tasks(medboard_home)
    (tmp_path / "open.csv").write_text(OPEN)
    (tmp_path / "flowertune.csv").write_text(FLOWERTUNE)
    # the measured columns of the benchmarks this checkout has
    with MULTILINGUAL.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    track = REGISTRY.suite("multilingual_medical")
    kept = [c for c in rows[0] if c in track or c in ("model", "track", "model_type", "dtype")]
    with (tmp_path / "multilingual.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, kept, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    yield from _serve(medboard_home, tmp_path, tmp_path / "multilingual.csv")


def test_the_multilingual_board_by_language(multilingual: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(multilingual + "/leaderboard/multilingual_medical")
        models = _models(page)
        assert sorted(models) == ["HuggingFaceTB/SmolLM2-135M-Instruct", "google/gemma-3-270m"]
        ranks = page.locator("#board tbody tr[data-entry-id] td:first-child").all_inner_texts()
        assert ranks == ["1", "2"]
        header = page.locator("#board thead")
        for title in ("CMMLU medical (zh)", "IgakuQA (ja)", "RuMedDaNet (ru)", "MedQA (zh)"):
            expect(header).to_contain_text(title)
        spec = track_spec("multilingual_medical")
        marked = sum(REGISTRY.task(spec.column_tasks(c)[0]).noncommercial for c in spec.tasks)
        expect(header.locator("abbr.license-mark")).to_have_count(marked)
        _screenshot(page, "leaderboard_multilingual", tmp_path)

        page.select_option("select[name=language]", "zh")
        page.wait_for_url("**language=zh**")
        header = page.locator("#board thead")
        expect(header).to_contain_text("Average (zh)")
        expect(header).to_contain_text("MedQA (zh)")
        expect(header).not_to_contain_text("IgakuQA")
        assert sorted(_models(page)) == sorted(models)

        page.locator("#board tbody td.model a").first.click()
        page.wait_for_url("**/model/*")
        scores = page.locator("table.scores").first
        expect(scores).to_contain_text("Language: ja")
        expect(scores).to_contain_text("Language: ru")
        expect(scores.locator(".license-mark").first).to_have_text("non-commercial")
        browser.close()


DEMO = "SmolLM2 demo (fake model)"


@pytest.fixture()
def fresh(medboard_home: Path, tmp_path: Path) -> Iterator[str]:
    """A fresh `medboard serve` as the main job starts it: the published FlowerTune table and a
    demo model queued for open_medical, which the in-process worker evaluates. The fake model
    stands in for SmolLM2, slowed down so that the pages are seen while it runs; on the shared
    benchmarks where this checkout has them (the main job's data: the pages count the real
    tasks' questions), else on the task fixtures and the test's FlowerTune rows."""
    _needs_browser()
    benchmarks = shared_benchmarks()
    published = benchmarks.parent / "published" / "flowertune_medical.csv" if benchmarks else None
    if benchmarks is not None and published is not None and published.is_file():
        _medboard(medboard_home, "data", "import", str(benchmarks))
        model = "fake:delay=0.05"  # 880 batches of 8 questions: about 45 s
    else:
        import_fixture_tasks(medboard_home)
        published = tmp_path / "flowertune.csv"
        published.write_text(FLOWERTUNE_ROWS)
        model = "fake:delay=1,batch=1"  # 15 questions, one a second
    extra = ["--submit", model, "--name", DEMO]
    yield from _serve(medboard_home, tmp_path, tables=[published], extra=extra, lease=4)


def _running_with_an_estimate(url: str, page) -> dict:
    """The demo job once its worker has stored the whole job's progress and time left."""
    deadline = time.time() + 120
    job: dict = {}
    while time.time() < deadline:
        job = page.request.get(url + "/api/queue").json()["submissions"][0]
        whole = job["job_progress"] or {}
        if job["status"] not in ("pending", "running") or whole.get("eta_seconds") is not None:
            break
        time.sleep(0.3)
    assert job["status"] == "running" and job["job_progress"]["done"] > 0, job
    return job


def test_the_first_minutes_of_a_fresh_serve(fresh: str, tmp_path: Path) -> None:
    """Issue 35: the landing page of a fresh board shows the published rows and the queued demo,
    /api lists the JSON endpoints, the queue shows the whole job and its time left, and the
    About page says what each track measures."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)

        # the landing page: the published FlowerTune rows and the queued demo
        page.goto(fresh + "/")
        flowertune = page.locator("#track-flowertune_medical")
        expect(flowertune).to_contain_text("ZeroOne.AI")
        assert flowertune.locator("tbody tr").count() >= 3  # the first rows, in rank order
        demo = page.locator("#queue-now tbody tr", has_text=DEMO)
        expect(demo).to_have_count(1)
        assert demo.get_attribute("data-status") in ("pending", "running")
        expect(page.locator("#empty-tracks")).to_contain_text("being evaluated")

        # /api answers JSON: the endpoints
        api = page.request.get(fresh + "/api")
        assert api.ok and api.headers["content-type"].startswith("application/json")
        paths = {e["path"] for e in api.json()["endpoints"]}
        assert {"/api/overview", "/api/queue", "/api/about", "/api/leaderboard/{track}"} <= paths

        # while it runs: the whole job's questions and time left, on the landing page and the
        # queue, as the JSON twin has them
        job = _running_with_an_estimate(fresh, page)
        page.goto(fresh + "/")
        expect(page.locator("#queue-now .progress .job")).to_contain_text("questions")
        _screenshot(page, "home", tmp_path)
        page.goto(fresh + "/queue")
        row = page.locator(f"#submission-{job['id']}")
        expect(row.locator(".progress .job")).to_contain_text(
            re.compile(r"[0-9,]+/[0-9,]+ questions \([0-9.]+%\)")
        )
        expect(row.locator(".progress .eta")).to_contain_text(re.compile("left|estimating…"))
        submitted = row.locator("td.when time").first
        expect(submitted).to_have_attribute("datetime", re.compile(r"^\d{4}-.*Z$"))
        expect(submitted).to_contain_text(re.compile("ago|just now"))
        _screenshot(page, "queue", tmp_path)

        # the About page, from the nav
        page.locator("header nav a", has_text="About").click()
        page.wait_for_url("**/about")
        expect(page.locator("#about-flowertune_medical")).to_contain_text("flowertune/1")
        expect(page.locator("#about-open_medical")).to_contain_text("loglik/1")
        expect(page.locator("pre.bibtex")).to_contain_text("@software{medboard,")
        expect(page.locator("#sources")).to_contain_text("MedQA (Jin et al.), MIT license")
        _screenshot(page, "about", tmp_path)
        browser.close()


FL_TEAM = "Browser FL"


@pytest.fixture()
def federated(
    medboard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    """Issue 36: a finished federated run (the CI config, 4 sites and 3 rounds on the tiny Llama,
    made in-process as tests/federated/test_central_scoring.py does), a real `medboard serve`
    with the published FlowerTune rows, and the run queued on serve's database by
    `medboard fl submit` in a subprocess, as a user would; serve's worker scores its three jobs.
    Yields (serve's URL, the base model's path)."""
    _needs_browser()
    for module in ("flwr", "flwr_datasets", "peft"):
        pytest.importorskip(module)
    import torch

    from tests.federated.helpers import finished_run, make_fl_setup

    import_fixture_tasks(medboard_home)
    (tmp_path / "open.csv").write_text(OPEN)
    (tmp_path / "flowertune.csv").write_text(FLOWERTUNE_ROWS)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as tests/federated/conftest.py's _one_thread
    try:
        setup = make_fl_setup(tmp_path / "fl")
        app, run = finished_run(setup, tmp_path / "fl")
    finally:
        torch.set_num_threads(threads)
    for url in _serve(medboard_home, tmp_path):
        db = f"sqlite:///{tmp_path / 'board.db'}"
        _medboard(medboard_home, "fl", "submit", str(run), "--team", FL_TEAM,
                  "--reference", str(app), "--db", db, "--allow-data-mismatch")  # fmt: skip
        yield url, setup.model


def _finished_jobs(url: str, page, count: int, within: float = 120) -> list[dict]:
    """The queue's jobs once `count` of them are there and none is pending or running."""
    deadline = time.time() + within
    jobs: list[dict] = []
    while time.time() < deadline:
        jobs = page.request.get(url + "/api/queue").json()["submissions"]
        if len(jobs) == count and all(j["status"] in ("finished", "failed") for j in jobs):
            break
        time.sleep(0.5)
    return jobs


def test_a_federated_run_scored_by_serve(federated: tuple[str, Path], tmp_path: Path) -> None:
    """Issue 36: `medboard fl submit` queues the run once per protocol and serve's worker scores
    each into an entry. The FlowerTune board shows the three, each marked with its protocol and
    ranked among its protocol's entries (the flowertune one with the published rows), under the
    team's name, with the comm. cost; the model page shows the cost, budget, rounds, sites and
    the static config's hash."""
    from playwright.sync_api import expect, sync_playwright

    url, base = federated
    name = f"{FL_TEAM} / {Path(base).name}"  # fl submit's default, as the published rows read
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)

        # three jobs, one per protocol, all finished by serve's in-process worker
        jobs = _finished_jobs(url, page, 3)
        assert sorted(j["protocol"] for j in jobs) == ["flowertune", "generative", "loglik"], jobs
        assert {j["status"] for j in jobs} == {"finished"}, [
            (j["status"], j["reason"]) for j in jobs
        ]

        # the board: one section per protocol, the flowertune one (this track's protocol) with
        # the published rows
        page.goto(url + "/leaderboard/flowertune_medical")
        rows = page.locator("#board tbody tr")
        kinds = [
            rows.nth(i).get_attribute("data-ranking")
            or rows.nth(i).locator("td.model").inner_text()
            for i in range(rows.count())
        ]
        assert kinds[0] == "flowertune" and kinds[5] == "generative" and kinds[7] == "loglik", kinds
        published = [k for k in kinds[1:5] if not k.startswith(FL_TEAM)]
        assert len(published) == 3 and published[0].startswith("ZeroOne.AI / "), kinds
        expect(rows.nth(5)).to_contain_text("apart from the flowertune ranking")

        # our three entries: the same model, told apart by their protocol badges, each with the
        # run's comm. cost in the cost column
        ours = page.locator("#board tbody tr[data-entry-id]", has_text=FL_TEAM)
        expect(ours).to_have_count(3)
        header = [h.strip() for h in page.locator("#board thead th").all_inner_texts()]
        cost_column = header.index("Comm. cost (GB)")
        costs = {}
        for i in range(3):
            row = ours.nth(i)
            expect(row.locator("td.model a")).to_have_text(name)
            costs[row.locator(".badge.protocol").inner_text()] = (
                row.locator("td").nth(cost_column).inner_text()
            )
        assert sorted(costs) == ["flowertune", "generative", "loglik"]
        assert sum(k.startswith(FL_TEAM) for k in kinds[1:5]) == 1, kinds
        assert kinds[6].startswith(FL_TEAM) and kinds[6].endswith("generative"), kinds
        assert kinds[8].startswith(FL_TEAM) and kinds[8].endswith("loglik"), kinds
        _screenshot(page, "leaderboard_federated", tmp_path)

        # the flowertune entry's page: cost, budget, rounds, sites, static hash
        ours.filter(has=page.locator(".badge.protocol", has_text="flowertune")).locator(
            "td.model a"
        ).click()
        page.wait_for_url("**/model/*")
        entry_id = page.url.rsplit("/", 1)[1]
        shown = page.request.get(f"{url}/api/model/{entry_id}").json()["entry"]
        fed = shown["extra"]["federated"]
        assert shown["team"] == FL_TEAM and shown["extra"]["protocol"] == "flowertune/1"
        assert 0 < shown["comm_cost_gb"] == fed["comm_gb"] < 1.0 and len(fed["static_hash"]) == 64
        for protocol, cost in costs.items():  # the board's cost is the entry's, 2 digits
            assert float(cost) == pytest.approx(shown["comm_cost_gb"], rel=0.05), protocol
        facts = page.locator("dl", has_text="Static config hash")
        for label, value in [
            ("Communication cost", f"{shown['comm_cost_gb']:.2g} GB"),
            ("Bytes exchanged", f"{fed['comm_bytes']} B in {fed['messages']} messages"),
            ("Communication budget", "1.0 GB"),
            ("Rounds", "3"),
            ("Sites", "4, 4 sampled per round"),
            ("Static config hash", fed["static_hash"]),
        ]:
            fact = facts.locator("dt", has_text=label).locator("xpath=following-sibling::dd[1]")
            expect(fact).to_contain_text(value)
        # the sites' training data against the suite: a count of items per task
        items = page.locator("#contamination tbody tr td:nth-child(2)").all_inner_texts()
        assert items and all(i.isdigit() for i in items), items
        _screenshot(page, "model_page_federated", tmp_path)
        browser.close()
