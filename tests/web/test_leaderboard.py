"""The leaderboard page, its JSON twin, CSV export, plots and the comparison page."""

import csv
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medboard.leaderboard.published import import_published
from medboard.leaderboard.ranking import track_spec
from medboard.results.db import open_database
from medboard.results.record import record_entry
from medboard.results.schema import RunResult, RunSpec, Score
from medboard.tasks import REGISTRY, TRACKS
from medboard.web.app import create_app
from tests.web.conftest import OPEN_TASKS, add_evaluated, entry_ids


class BoardTable(HTMLParser):
    """The rows of the table with id `board`: entry id and cell texts; the texts of the rows
    that head its sections (a ranking, the unranked entries)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.headers: list[str] = []
        self.rows: list[tuple[int, list[str]]] = []
        self.sections: list[str] = []
        self._cell: list[str] | None = None
        self._in_head = False
        self._row = ""  # "entry", "section" or ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if tag == "table" and found.get("id") == "board":
            self.inside = True
        if not self.inside:
            return
        if tag == "thead":
            self._in_head = True
        if tag == "tr" and "data-entry-id" in found:
            self.rows.append((int(found["data-entry-id"]), []))
            self._row = "entry"
        elif tag == "tr":
            self._row = "section" if found.get("class") == "section" else ""
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if not self.inside:
            return
        if tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if self._in_head:
                self.headers.append(text)
            elif self._row == "entry":
                self.rows[-1][1].append(text)
            elif self._row == "section":
                self.sections.append(text)
            self._cell = None
        if tag == "thead":
            self._in_head = False
        if tag == "table":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table(html: str) -> BoardTable:
    parser = BoardTable()
    parser.feed(html)
    return parser


def page(client: TestClient, url: str) -> tuple[BoardTable, dict]:
    """The HTML table of a view and its JSON twin."""
    response = client.get(url)
    assert response.status_code == 200, response.text
    twin = client.get("/api" + url)
    assert twin.status_code == 200
    return table(response.text), twin.json()


def models(data: dict) -> list[str]:
    return [row["model"] for row in data["rows"]]


def test_ranking_order_ties_and_partial_entries(client: TestClient) -> None:
    html, data = page(client, "/leaderboard/open_medical")
    assert models(data) == [
        "alpha-7b",
        "beta-1.5b",
        "Gamma-2b",
        "tiny-eval",
        "epsilon-med",
        "delta-8b",
    ]
    assert [r["rank"] for r in data["rows"]] == [1, 2, 2, 4, 5, None]
    assert (data["entries"], data["ranked"], data["matching"]) == (6, 5, 6)
    tiny = data["rows"][3]
    assert tiny["average"] == pytest.approx((1 / 3 + 0.5 + 7 * 0.55) / 9)
    assert tiny["origin"] == "evaluated" and tiny["parameters"] == 135_000_000
    delta = data["rows"][5]
    assert delta["complete"] is False and delta["average"] is None
    assert delta["scores"]["medqa_4options"] == pytest.approx(0.9)
    assert delta["scores"]["mmlu_anatomy"] is None
    # the page shows exactly the twin's rows, in its order, with its numbers
    assert [entry_id for entry_id, _ in html.rows] == [r["entry_id"] for r in data["rows"]]
    for (_, cells), row in zip(html.rows, data["rows"], strict=True):
        assert cells[0] == ("—" if row["rank"] is None else str(row["rank"]))
        assert cells[1] == row["model"]
        expected = "—" if row["average"] is None else f"{100 * row['average']:.2f}"
        assert cells[2] == expected
        assert cells[3] == ("—" if row["scores"]["medqa_4options"] is None else
                            f"{100 * row['scores']['medqa_4options']:.2f}")  # fmt: skip
    assert html.headers[:4] == ["Rank", "Model", "Average ▼", "MedQA"]


def test_sort_by_any_column_and_the_header_links(client: TestClient) -> None:
    # delta-8b has the best MedQA but misses tasks: unranked, it stays apart, after the ranking
    _, data = page(client, "/leaderboard/open_medical?sort=medqa_4options&desc=1")
    assert models(data)[:3] == ["alpha-7b", "beta-1.5b", "Gamma-2b"]
    assert models(data)[-1] == "delta-8b"
    _, data = page(client, "/leaderboard/open_medical?sort=medqa_4options&desc=0")
    assert models(data)[:2] == ["tiny-eval", "epsilon-med"]
    _, data = page(client, "/leaderboard/open_medical?sort=model&desc=0")
    ranked = [r["model"] for r in data["rows"] if r["rank"] is not None]
    assert ranked == sorted(ranked, key=str.casefold) and models(data)[-1] == "delta-8b"
    _, data = page(client, "/leaderboard/open_medical?sort=parameters")
    assert models(data) == [
        "alpha-7b",
        "Gamma-2b",
        "beta-1.5b",
        "tiny-eval",
        "epsilon-med",
        "delta-8b",
    ]
    _, data = page(client, "/leaderboard/open_medical?sort=dtype&desc=0")
    ranked_dtypes = [r["dtype"] for r in data["rows"] if r["rank"] is not None]
    assert ranked_dtypes[-1] == ""  # unknown precision last
    text = client.get("/leaderboard/open_medical?sort=medqa_4options&desc=1").text
    assert 'href="/leaderboard/open_medical?sort=medqa_4options&amp;desc=0"' in text
    assert 'href="/leaderboard/open_medical?sort=medmcqa"' in text


def test_search_and_filters(client: TestClient) -> None:
    _, data = page(client, "/leaderboard/open_medical?q=gamma")
    assert models(data) == ["Gamma-2b"] and data["rows"][0]["rank"] == 2
    _, data = page(client, "/leaderboard/open_medical?q=llama")  # team and base model
    assert models(data) == ["epsilon-med", "delta-8b"]
    _, data = page(client, "/leaderboard/open_medical?type=pretrained&type=fine-tuned")
    assert models(data) == ["beta-1.5b", "epsilon-med"]
    _, data = page(client, "/leaderboard/open_medical?type=pretrained,fine-tuned")
    assert models(data) == ["beta-1.5b", "epsilon-med"]
    _, data = page(client, "/leaderboard/open_medical?precision=unknown")
    assert models(data) == ["epsilon-med"]
    _, data = page(client, "/leaderboard/open_medical?source=evaluated")
    assert models(data) == ["tiny-eval"]
    _, data = page(client, "/leaderboard/open_medical?min_b=1.5&max_b=7")
    assert models(data) == ["alpha-7b", "beta-1.5b", "Gamma-2b"]
    _, data = page(client, "/leaderboard/open_medical?complete=1")
    assert "delta-8b" not in models(data) and data["matching"] == 5
    assert data["facets"] == {
        "model_types": ["fine-tuned", "instruct", "pretrained"],
        "weight_types": ["original"],
        "precisions": ["bfloat16", "float16", "unknown"],
        "protocols": ["loglik"],
        "sources": ["evaluated", "published"],
    }
    html = client.get("/leaderboard/open_medical?q=nothing-like-this").text
    assert "No entry matches this view." in html


def test_an_empty_board_points_to_submit_and_the_queue(tmp_path: Path) -> None:
    """What `medboard serve --submit` shows first: a board with nothing evaluated yet."""
    empty = TestClient(create_app(open_database(f"sqlite:///{tmp_path}/empty.sqlite")))
    html = empty.get("/leaderboard/open_medical").text
    assert "No entry on this board yet" in html and "No entry matches" not in html
    assert 'href="/submit?track=open_medical"' in html and 'href="/queue"' in html


def test_column_picker(client: TestClient) -> None:
    html, data = page(client, "/leaderboard/open_medical?cols=medqa_4options,parameters")
    assert data["columns"] == ["medqa_4options", "parameters"]
    assert html.headers == ["Rank", "Model", "Average ▼", "MedQA", "Params", "Compare"]
    assert html.rows[0][1][4] == "7.0B"
    _, data = page(client, "/leaderboard/open_medical")
    assert data["columns"] == [
        *OPEN_TASKS, "model_type", "weight_type", "parameters", "dtype", "date", "origin",
    ]  # fmt: skip


def test_form_submission_redirects_to_the_clean_shareable_url(client: TestClient) -> None:
    response = client.get(
        "/leaderboard/open_medical?sort=average&q=&type=instruct&min_b=&max_b="
        "&cols=&cols=medqa_4options&cols=medmcqa",
        follow_redirects=False,
    )
    assert response.status_code == 302
    assert response.headers["location"] == (
        "/leaderboard/open_medical?type=instruct&cols=medqa_4options%2Cmedmcqa"
    )
    followed = client.get(response.headers["location"])
    assert table(followed.text).headers[3:5] == ["MedQA", "MedMCQA"]


def test_values_that_cannot_be_read_are_ignored_with_a_warning(client: TestClient) -> None:
    response = client.get("/leaderboard/open_medical?min_b=abc&sort=nope&page=x")
    assert response.status_code == 200
    assert "min_b &#39;abc&#39; is not a size" in response.text
    assert "cannot sort by &#39;nope&#39;" in response.text
    data = client.get("/api/leaderboard/open_medical?min_b=abc&sort=nope").json()
    assert data["view"]["sort"] == "average" and data["matching"] == 6
    assert len(data["warnings"]) == 2


def test_pagination(client: TestClient) -> None:
    html, data = page(client, "/leaderboard/open_medical?per_page=4&page=2")
    assert (data["page"], data["pages"]) == (2, 2)
    assert models(data) == ["epsilon-med", "delta-8b"]
    assert [r for r, _ in html.rows] == [r["entry_id"] for r in data["rows"]]
    text = client.get("/leaderboard/open_medical?per_page=4").text
    assert 'href="/leaderboard/open_medical?page=2&amp;per_page=4"' in text


def test_csv_export_honors_the_view(client: TestClient) -> None:
    response = client.get("/leaderboard/open_medical.csv?source=published&sort=model&desc=0")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["model"] for r in rows] == [
        "alpha-7b", "beta-1.5b", "epsilon-med", "Gamma-2b", "delta-8b",
    ]  # fmt: skip
    alpha = rows[0]
    assert (
        alpha["rank"] == "1" and alpha["average"] == "70.00" and alpha["medqa_4options"] == "70.00"
    )
    assert alpha["parameters"] == "7000000000" and alpha["origin"] == "published"
    assert alpha["ranking"] == "loglik" and alpha["weight_type"] == "original"
    delta = rows[4]
    assert delta["rank"] == "" and delta["average"] == "" and delta["mmlu_anatomy"] == ""
    assert delta["ranking"] == "" and delta["partial"] == ""  # missing tasks, not a subset
    every = list(csv.DictReader(io.StringIO(client.get("/leaderboard/open_medical.csv").text)))
    assert len(every) == 6


def test_flowertune_board_has_the_communication_cost(client: TestClient) -> None:
    html, data = page(client, "/leaderboard/flowertune_medical")
    assert [r["team"] for r in data["rows"]] == [
        "ZeroOne.AI", "FL-finetune-JB-DC", "Massimo R. Scamarcia",
    ]  # fmt: skip
    assert [r["comm_cost_gb"] for r in data["rows"]] == [2.0, 1.6, 45.1]
    assert "Comm. cost (GB)" in html.headers and "Team" not in html.headers
    assert "Params" not in html.headers  # the federated table publishes no sizes
    _, cheap = page(client, "/leaderboard/flowertune_medical?sort=comm_cost_gb")
    assert [r["comm_cost_gb"] for r in cheap["rows"]] == [1.6, 2.0, 45.1]
    rows = list(csv.DictReader(io.StringIO(client.get("/leaderboard/flowertune_medical.csv").text)))
    assert rows[0]["comm_cost_gb"] == "2.0" and rows[0]["careqa_en"] == "64.79"
    assert "comm_cost_gb" not in client.get("/leaderboard/open_medical.csv").text


def test_plots_are_inline_svg(client: TestClient, database) -> None:
    html = client.get("/leaderboard/open_medical").text
    svg = re.search(r"<svg class=\"plot\".*?</svg>", html, re.S)
    assert svg is not None and "Average against parameters" in svg.group(0)
    ids = entry_ids(database)
    links = re.findall(r'<a href="/model/(\d+)"><circle', svg.group(0))
    with_size = ["alpha-7b", "beta-1.5b", "Gamma-2b", "tiny-eval"]  # ranked, size known
    assert sorted(int(i) for i in links) == sorted(ids[m] for m in with_size)
    flowertune = client.get("/leaderboard/flowertune_medical").text
    assert "Average against communication cost" in flowertune
    assert "Average against parameters" not in flowertune  # no sizes published
    assert len(re.findall(r"<circle", flowertune)) == 3


def test_compare_page_json_and_csv(client: TestClient, database) -> None:
    ids = entry_ids(database)
    chosen = [ids["tiny-eval"], ids["alpha-7b"]]
    query = f"?track=open_medical&ids={chosen[0]}&ids={chosen[1]}"
    data = client.get("/api/compare" + query).json()
    assert [r["model"] for r in data["rows"]] == ["tiny-eval", "alpha-7b"]
    html = client.get("/compare" + query).text
    assert "<svg" in html and "Per-task comparison" in html
    assert html.count('fill="#2563eb"') >= 9  # one bar per task (and the legend)
    rows = list(csv.DictReader(io.StringIO(client.get("/compare.csv" + query).text)))
    assert [r["model"] for r in rows] == ["alpha-7b", "tiny-eval"]
    odd = client.get(f"/api/compare?track=open_medical&ids=\u00b2,x,{chosen[1]},{chosen[1]}").json()
    assert odd["ids"] == [chosen[1]]  # what is not an id is left out, repeats too
    default = client.get("/api/compare?track=open_medical").json()
    assert [r["rank"] for r in default["rows"]] == [1, 2, 2, 4, 5]
    flower = client.get(f"/api/compare?track=flowertune_medical&ids={ids['tiny-eval']}").json()
    assert flower["rows"] == [] and flower["missing"] == [ids["tiny-eval"]]


def test_unknown_track_is_a_clear_404(client: TestClient) -> None:
    for url in ("/leaderboard/nope", "/leaderboard/nope.csv", "/compare?track=nope"):
        response = client.get(url)
        assert response.status_code == 404
        assert f"no track &#39;nope&#39; (tracks: {', '.join(TRACKS)})" in response.text
    response = client.get("/api/leaderboard/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": f"no track 'nope' (tracks: {', '.join(TRACKS)})"}


def test_new_entries_show_once_the_database_changed(database, tmp_path: Path) -> None:
    app = create_app(database)
    client = TestClient(app)
    assert len(client.get("/api/leaderboard/open_medical").json()["rows"]) == 5
    add_evaluated(database, tmp_path / "later")
    app.state.cache.check_seconds = 0.0  # read the fingerprint at once
    data = client.get("/api/leaderboard/open_medical").json()
    assert "tiny-eval" in models(data) and len(data["rows"]) == 6
    assert "tiny-eval" in client.get("/leaderboard/open_medical").text


def test_text_from_the_database_is_escaped(tmp_path: Path, database) -> None:
    table_path = tmp_path / "evil.csv"
    tasks = ",".join(OPEN_TASKS)
    scores = ",".join(["50"] * 9)
    table_path.write_text(
        f"model,team,parameters,{tasks}\n"
        f'"<script>alert(1)</script>","=cmd|\' /C calc\'!A0",1000000000,{scores}\n',
        encoding="utf-8",
    )
    import_published(database, table_path, track="open_medical")
    client = TestClient(create_app(database))
    html = client.get("/leaderboard/open_medical?cols=team").text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    exported = client.get("/leaderboard/open_medical.csv?q=script").text
    assert "'=cmd|" in exported  # a spreadsheet reads it as text, not a formula


def test_choosing_the_default_columns_gives_the_default_url(client: TestClient) -> None:
    defaults = client.get("/api/leaderboard/flowertune_medical").json()["columns"]
    assert defaults == [
        "pubmedqa", "medmcqa", "medqa_4options", "careqa_en", "comm_cost_gb", "model_type",
        "date", "origin",
    ]  # fmt: skip
    form = "&".join(f"cols={c}" for c in ["", *defaults])
    response = client.get(f"/leaderboard/flowertune_medical?{form}", follow_redirects=False)
    assert response.headers["location"] == "/leaderboard/flowertune_medical"
    with_team = client.get("/leaderboard/flowertune_medical?cols=team,careqa_en").text
    assert table(with_team).headers == ["Rank", "Model", "Team", "Average ▼", "CareQA", "Compare"]


def test_protocol_of_entries_and_its_filter(client: TestClient, database) -> None:
    from medboard.results.db import Entry

    with database.session() as session:  # one entry evaluated generatively
        entry = session.get(Entry, entry_ids(database)["tiny-eval"])
        entry.extra = {"protocol": "generative/1"}
    client.app.state.cache.invalidate()
    _, data = page(client, "/leaderboard/open_medical")
    assert data["facets"]["protocols"] == ["generative", "loglik"]
    protocols = {row["model"]: row["protocol"] for row in data["rows"]}
    assert protocols["tiny-eval"] == "generative"
    # ranked apart from the loglik entries (the track's own protocol, first), nothing mixed
    assert models(data) == [
        "alpha-7b", "beta-1.5b", "Gamma-2b", "epsilon-med", "tiny-eval", "delta-8b",
    ]  # fmt: skip
    ranks = {row["model"]: (row["ranking"], row["rank"]) for row in data["rows"]}
    assert ranks["tiny-eval"] == ("generative", 1) and ranks["epsilon-med"] == ("loglik", 4)
    assert data["warnings"] == [] and data["view"]["ranking"] == "protocol"
    assert [(s["ranking"], s["ranked"]) for s in data["sections"]] == [
        ("loglik", 4), ("generative", 1), (None, 0),
    ]  # fmt: skip
    _, only = page(client, "/leaderboard/open_medical?protocol=loglik")
    assert "tiny-eval" not in models(only) and only["view"]["protocol"] == ["loglik"]
    html = client.get("/leaderboard/open_medical").text
    assert 'name="protocol" value="generative"' in html
    flowertune = page(client, "/leaderboard/flowertune_medical")[1]
    assert {row["protocol"] for row in flowertune["rows"]} == {"flowertune"}


def add_run_entry(
    database, track: str, name: str, value: float, limit: int | None = None, protocol: str = ""
) -> int:
    """An evaluated entry with one medboard run per task of the track (as `medboard eval
    --record` stores it), each scoring `value`, on `limit` questions when given."""
    results = []
    for task in track_spec(track).tasks:
        size = REGISTRY.task(task).expected_size or 0
        n = min(limit, size) if limit else size
        spec = RunSpec(
            task=task, task_version="1", protocol=protocol or "loglik/1", dataset=task,
            split="test", data_hash=f"sha256:{task}", model=name, model_revision=name,
            dtype="bfloat16", limit=limit, harness_version="0.1.0",
        )  # fmt: skip
        results.append(
            RunResult(
                key=spec.key(),
                spec=spec,
                scores={"acc": Score(value=value, stderr=0.01)},
                n_samples=n,
                prompt_tokens=0,
                started_at="",
                finished_at="2026-01-02T00:00",
                wall_seconds=1.0,
                data_source="test",
                samples_file="",
            )  # fmt: skip
        )
    identity = {"model": name, "revision": name, "dtype": "bfloat16"}
    extra = {"protocol": protocol} if protocol else {}
    return record_entry(database, track, results, identity, {"model_type": "instruct"}, extra=extra)


def test_a_limited_run_is_shown_apart_and_marked_partial(client: TestClient, database) -> None:
    """`medboard eval --record --limit 30`: the best scores on the board, on 30 questions per
    task: listed apart, unranked, without an average, marked partial (issue 33)."""
    limited = add_run_entry(database, "open_medical", "limited-run", 0.95, limit=30)
    client.app.state.cache.invalidate()
    html, data = page(client, "/leaderboard/open_medical")
    assert models(data)[-2:] == ["delta-8b", "limited-run"]
    assert [r["rank"] for r in data["rows"]] == [1, 2, 2, 4, 5, None, None]
    assert (data["entries"], data["ranked"]) == (7, 5)
    row = data["rows"][-1]
    assert (row["rank"], row["average"], row["complete"], row["ranking"]) == (
        None, None, False, None,
    )  # fmt: skip
    assert row["partial"] == {
        "questions_per_task": 30,
        "tasks": OPEN_TASKS,
        "text": "partial: 30 questions per task",
    }
    assert row["scores"]["medqa_4options"] == pytest.approx(0.95)
    assert row["rank_interval"] is None
    cells = dict(html.rows)[limited]
    assert cells[0] == "—" and cells[2] == "—"
    assert cells[1] == "limited-run partial: 30 questions per task"
    assert html.sections == [
        "Ranked among loglik entries (5): this track's protocol",
        "Not ranked: 2 partial entries (a task missing, or scored on a subset of its questions)",
    ]
    # a full run of the same scores is ranked first
    add_run_entry(database, "open_medical", "full-run", 0.95)
    client.app.state.cache.invalidate()
    _, data = page(client, "/leaderboard/open_medical")
    assert models(data)[0] == "full-run" and data["rows"][0]["rank"] == 1
    exported = list(csv.DictReader(io.StringIO(client.get("/leaderboard/open_medical.csv").text)))
    by_model = {r["model"]: r for r in exported}
    assert by_model["limited-run"]["partial"] == "partial: 30 questions per task"
    assert by_model["limited-run"]["rank"] == "" and by_model["full-run"]["partial"] == ""


def test_a_loglik_entry_is_not_ranked_among_generative_published_rows(
    client: TestClient, database
) -> None:
    """The FlowerTune rows were scored generatively: a log-likelihood entry gets a ranking of
    its own; ranking every protocol together is a choice the page and its JSON warn about."""
    loglik = add_run_entry(database, "flowertune_medical", "loglik-entry", 0.8, protocol="loglik/1")
    client.app.state.cache.invalidate()
    html, data = page(client, "/leaderboard/flowertune_medical")
    ranks = [(r["entry_id"] == loglik, r["ranking"], r["rank"]) for r in data["rows"]]
    assert ranks == [
        (False, "flowertune", 1), (False, "flowertune", 2), (False, "flowertune", 3),
        (True, "loglik", 1),
    ]  # fmt: skip
    assert data["warnings"] == [] and data["protocol"] == "flowertune"
    assert html.sections == [
        "Ranked among flowertune entries (3): this track's protocol",
        "Ranked among loglik entries (1), apart from the flowertune ranking",
    ]
    text = client.get("/leaderboard/flowertune_medical").text
    assert 'value="all"' in text and ">all protocols together</option>" in text
    assert 'class="warning"' not in text

    html, mixed = page(client, "/leaderboard/flowertune_medical?ranking=all")
    assert [(r["entry_id"] == loglik, r["rank"]) for r in mixed["rows"]] == [
        (True, 1), (False, 2), (False, 3), (False, 4),
    ]  # fmt: skip
    assert mixed["view"]["ranking"] == "all" and len(mixed["warnings"]) == 1
    warning = mixed["warnings"][0]
    assert "mixes evaluation protocols: flowertune (3 entries), loglik (1 entry)" in warning
    shown = client.get("/leaderboard/flowertune_medical?ranking=all").text
    assert re.search(r'<p class="warning" role="status">this ranking mixes evaluation', shown)
    assert html.sections == ["One ranking over every protocol (flowertune, loglik): not comparable"]
    assert mixed["links"]["json"] == "/api/leaderboard/flowertune_medical?ranking=all"
    odd = client.get("/api/leaderboard/flowertune_medical?ranking=bogus").json()
    assert odd["warnings"] == ["ranking 'bogus' is not 'protocol' or 'all': ranked per protocol"]
    assert odd["view"]["ranking"] == "protocol"


def test_published_averages_are_shown_as_published(client: TestClient) -> None:
    """FL-finetune-JB-DC's columns average 63.1275 (63.13); its table says 63.12."""
    html, data = page(client, "/leaderboard/flowertune_medical")
    by_team = {r["team"]: r for r in data["rows"]}
    flagged = by_team["FL-finetune-JB-DC"]
    assert flagged["average"] == pytest.approx(0.6312)
    assert flagged["recomputed_average"] == pytest.approx(0.631275)
    assert by_team["ZeroOne.AI"]["recomputed_average"] is None  # 63.5725 reads 63.57
    cells = dict(html.rows)[flagged["entry_id"]]
    assert cells[2] == "63.12*"
    text = client.get("/leaderboard/flowertune_medical").text
    assert text.count('title="recomputed from the task columns: 63.13"') == 1
    rows = list(csv.DictReader(io.StringIO(client.get("/leaderboard/flowertune_medical.csv").text)))
    assert [(r["average"], r["recomputed_average"]) for r in rows] == [
        ("63.57", ""), ("63.12", "63.13"), ("49.07", ""),
    ]  # fmt: skip


def test_weight_type_filter_and_column(client: TestClient, database) -> None:
    from medboard.results.db import Entry

    with database.session() as session:
        entry = session.get(Entry, entry_ids(database)["tiny-eval"])
        entry.extra = {**entry.extra, "weight_type": "adapter"}
    client.app.state.cache.invalidate()
    html, data = page(client, "/leaderboard/open_medical?weight_type=adapter")
    assert models(data) == ["tiny-eval"] and data["rows"][0]["weight_type"] == "adapter"
    assert data["facets"]["weight_types"] == ["adapter", "original"]
    assert data["view"]["weight_type"] == ["adapter"]
    assert "Weight type" in html.headers and "Type" in html.headers
    assert html.rows[0][1][html.headers.index("Weight type")] == "adapter"
    assert html.rows[0][1][html.headers.index("Type")] == "instruct"
    _, original = page(client, "/leaderboard/open_medical?weight_type=original")
    assert "tiny-eval" not in models(original) and len(models(original)) == 5
    text = client.get("/leaderboard/open_medical").text
    assert 'name="weight_type" value="adapter"' in text


def test_api_lists_the_json_endpoints(client: TestClient) -> None:
    # The footer says every page has a JSON twin under /api: /api itself lists them.
    found = client.get("/api").json()
    paths = {e["path"] for e in found["endpoints"]}
    assert {"/api/leaderboard/{track}", "/api/model/{entry_id}", "/api/queue"} <= paths
    assert all(p.startswith("/api/") for p in paths)
    assert found["openapi"] == "/openapi.json" and found["docs"] == "/docs"
    assert client.get(found["openapi"]).status_code == 200
