"""The About page: tracks, protocols, citing, data sources and licenses, all from the registry."""

import pytest
from fastapi.testclient import TestClient

from medboard import __version__
from medboard.leaderboard.ranking import TRACKS, track_spec
from medboard.tasks import REGISTRY
from medboard.tasks.protocols import LOGLIK_VERSION, PROTOCOLS


def test_about_lists_every_track_with_its_protocol_and_tasks(client: TestClient) -> None:
    html = client.get("/about").text
    data = client.get("/api/about").json()
    assert [t["track"] for t in data["tracks"]] == list(TRACKS)
    for track in data["tracks"]:
        spec = track_spec(track["track"])
        assert [c["name"] for c in track["columns"]] == list(spec.tasks)
        assert track["protocol"]["name"] == spec.protocol
        tasks = [t["name"] for c in track["columns"] for t in c["tasks"]]
        assert tasks == list(REGISTRY.suite(track["track"]))
        sizes = [REGISTRY.task(t).expected_size for t in tasks]
        assert track["questions"] == sum(s or 0 for s in sizes)
        assert f'id="about-{track["track"]}"' in html
        assert f"<code>{tasks[-1]}</code> (" in html
    flowertune = next(t for t in data["tracks"] if t["track"] == "flowertune_medical")
    assert flowertune["protocol"]["version"] == PROTOCOLS["flowertune"].version
    assert flowertune["protocol"]["kind"] == "generative"
    open_medical = data["tracks"][0]
    assert (open_medical["questions"], open_medical["protocol"]["version"]) == (7045, "loglik/1")
    assert "7,045 questions (language: en)" in html
    multilingual = next(t for t in data["tracks"] if t["track"] == "multilingual_medical")
    languages = sorted({REGISTRY.task(t).language for t in REGISTRY.suite("multilingual_medical")})
    assert multilingual["languages"] == languages and len(languages) > 1
    assert f"{multilingual['questions']:,} questions (languages: {', '.join(languages)})" in html


def test_about_gives_every_protocol_version(client: TestClient) -> None:
    data = client.get("/api/about").json()
    versions = [p["version"] for p in data["protocols"]]
    assert versions == [LOGLIK_VERSION, *(p.version for p in PROTOCOLS.values())]
    html = client.get("/about").text
    for version in versions:
        assert f"<code>{version}</code>" in html
        assert version in data["cite"]["bibtex"]


def test_about_says_how_to_cite(client: TestClient) -> None:
    data = client.get("/api/about").json()
    bibtex = data["cite"]["bibtex"]
    assert bibtex.startswith("@software{medboard,") and bibtex.endswith("}")
    assert f"version = {{{__version__}}}" in bibtex
    attributions = [c["attribution"] for c in data["cite"]["benchmarks"]]
    assert "MedQA (Jin et al.), MIT license" in attributions
    html = client.get("/about").text
    assert '<pre class="bibtex">@software{medboard,' in html
    assert "MMLU (Hendrycks et al.), MIT license" in html


def test_about_lists_every_data_source_with_its_license(client: TestClient) -> None:
    data = client.get("/api/about").json()
    sources = data["sources"]
    covered = [t for s in sources for t in s["tasks"]]
    on_tracks = {name for track in TRACKS for name in REGISTRY.suite(track)}
    assert sorted(covered) == sorted(on_tracks)  # each task of a track once
    for source in sources:
        tasks = [REGISTRY.task(t) for t in source["tasks"]]
        assert source["licenses"] == list(dict.fromkeys(t.license or "none stated" for t in tasks))
        assert source["noncommercial"] == any(t.noncommercial for t in tasks)
    mmlu = next(s for s in sources if s["title"] == "MMLU")
    assert len(mmlu["tasks"]) == 6 and mmlu["source"]["hub"] == "cais/mmlu"
    igakuqa = next(s for s in sources if s["tasks"] == ["igakuqa"])
    assert igakuqa["noncommercial"] and igakuqa["licenses"] == ["none stated"]
    html = client.get("/about").text
    assert 'href="https://huggingface.co/datasets/cais/mmlu"' in html
    assert "CC BY-NC-SA 4.0" in html


def test_about_links_the_documentation(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDBOARD_DOCS_URL", raising=False)
    html = client.get("/about").text
    assert "<code>docs/index.md</code>" in html and "MEDBOARD_DOCS_URL" in html
    assert client.get("/api/about").json()["medboard"]["docs_url"] is None
    monkeypatch.setenv("MEDBOARD_DOCS_URL", "https://docs.example.org/medboard/")
    html = client.get("/about").text
    assert '<a href="https://docs.example.org/medboard/">' in html
    assert (
        "url = {https://docs.example.org/medboard/}"
        in client.get("/api/about").json()["cite"]["bibtex"]
    )


def test_every_page_links_the_about_page(client: TestClient) -> None:
    for path in ("/", "/leaderboard/open_medical", "/queue", "/submit", "/about"):
        assert 'href="/about"' in client.get(path).text, path
    assert "/api/about" in [e["path"] for e in client.get("/api").json()["endpoints"]]
