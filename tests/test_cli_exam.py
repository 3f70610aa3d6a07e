"""`medboard exam` end to end, in fresh processes (the registry is built at import): a private
exam from JSONL and a public one from CSV are registered, evaluated, recorded, ranked, queued and
served (the private one's questions never); changed data is refused; a stored declaration that
no longer loads is skipped with a warning; a bad declaration is one line and writes nothing."""

import json
import subprocess
import sys
from pathlib import Path

from tests.tasks.test_declared import CSV, DECLARATION, RECORDS, jsonl
from tests.test_cli import assert_one_line_error, medboard

PRIVATE = "cardio_exam_2026"
PUBLIC = "derm_2026"
MORE = [
    {
        "id": f"c{i}",
        "question": f"Cardiology question number {i}?",
        "options": {"A": "first", "B": "second", "C": "third", "D": "fourth"},
        "answer": "ABCD"[i % 4],
    }
    for i in range(3, 9)
]

# Run in a fresh process on the same home: the ranking of each exam's track (web JSON), and what
# the model pages serve of each exam's questions.
CHECK = """
import json, sys
from fastapi.testclient import TestClient
from medboard.results.db import open_database
from medboard.web.app import create_app

client = TestClient(create_app(open_database(sys.argv[1])))
found = {}
for track in sys.argv[2:]:
    board = client.get(f"/api/leaderboard/{track}").json()
    found[track] = {"rows": [[r["entry_id"], r["rank"], r["average"]] for r in board["rows"]]}
    entry = board["rows"][0]["entry_id"]
    model = client.get(f"/api/model/{entry}", params={"task": track}).json()["samples"]
    found[track]["text"] = model.get("text")
    found[track]["task"] = model["task"]
    found[track]["questions"] = [row["question"] for row in model["rows"]]
    found[track]["page"] = client.get(f"/model/{entry}", params={"task": track}).text
    for kind in ("jsonl", "csv"):
        response = client.get(f"/model/{entry}/runs/{track}/samples.{kind}")
        found[track][kind] = [response.status_code, "private exam" in response.text]
print(json.dumps(found))
"""


def _declare(folder: Path) -> tuple[Path, Path]:
    folder.mkdir()
    (folder / "cardio.jsonl").write_text(jsonl(RECORDS + MORE), encoding="utf-8")
    private = folder / "cardio.toml"
    private.write_text(DECLARATION, encoding="utf-8")
    (folder / "derm.csv").write_text(CSV.format(answer="B"), encoding="utf-8")
    public = folder / "derm.toml"
    public.write_text(
        f'name = "{PUBLIC}"\ntitle = "Dermatology 2026"\nlicense = "CC BY 4.0"\n'
        'data = "derm.csv"\ntemplate = "Question: {question}\\nAnswer:"\nchoices = "texts"\n'
        "public = true\n",
        encoding="utf-8",
    )
    return private, public


def test_declared_exams_are_evaluated_recorded_ranked_queued_and_kept_private(
    medboard_home: Path, tmp_path: Path
) -> None:
    home, db = medboard_home, f"sqlite:///{tmp_path / 'board.db'}"
    private, public = _declare(tmp_path / "exams")
    for path, name in ((private, PRIVATE), (public, PUBLIC)):
        added = medboard(home, "exam", "add", str(path))
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith(f"registered exam {name} (")
    listed = medboard(home, "exam", "list")
    assert PRIVATE in listed.stdout and PUBLIC in listed.stdout and "private" in listed.stdout

    args = ["--tasks", PRIVATE, "--suite", PRIVATE, "--record", "--db", db]
    evaluated = medboard(home, "eval", "--model", "fake", *args)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"recorded as entry 1 on {PRIVATE}" in evaluated.stdout
    assert "mean of 1 task " in evaluated.stdout
    evaluated = medboard(home, "eval", "--model", "fake", "--suite", PUBLIC, "--record", "--db", db)
    assert f"recorded as entry 2 on {PUBLIC}" in evaluated.stdout, evaluated.stderr

    queued = medboard(home, "submit", "fake:bias=A", "--track", PRIVATE, "--db", db)
    assert queued.returncode == 0, queued.stderr
    assert f"queued #1: fake:bias=A (none) on {PRIVATE}" in queued.stdout
    worked = medboard(home, "worker", "--once", "--db", db)
    assert worked.returncode == 0 and "after 1 job(s)" in worked.stdout, worked.stderr

    checked = subprocess.run(
        [sys.executable, "-c", CHECK, db, PRIVATE, PUBLIC],
        capture_output=True, text=True, timeout=300,
        env={**_env(home)},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    found = json.loads(checked.stdout)
    rows = found[PRIVATE]["rows"]  # the fake model and the letter-A-biased one, ranked
    assert sorted(r[0] for r in rows) == [1, 3]
    assert sorted(r[1] for r in rows) in ([1, 1], [1, 2])
    bias_a = sum(r["answer"] == "A" for r in RECORDS + MORE) / len(RECORDS + MORE)
    assert next(r[2] for r in rows if r[0] == 3) == bias_a
    assert found[PUBLIC]["rows"][0][:2] == [2, 1]

    hidden = found[PRIVATE]
    # no sample table at all: a private exam's choices can be its option texts
    assert hidden["task"] is None and hidden["text"] is None and hidden["questions"] == []
    assert all(r["question"] not in hidden["page"] for r in RECORDS + MORE)
    assert hidden["jsonl"] == hidden["csv"] == [404, True]
    shown = found[PUBLIC]
    assert shown["text"]["shown"] and "CC BY 4.0" in shown["text"]["note"]
    assert "A rash that is\nitchy and round?" in shown["questions"]
    assert shown["jsonl"] == shown["csv"] == [200, False]


def test_changed_data_re_adding_and_a_broken_declaration(
    medboard_home: Path, tmp_path: Path
) -> None:
    home = medboard_home
    private, public = _declare(tmp_path / "exams")
    assert medboard(home, "exam", "add", str(private)).returncode == 0
    assert medboard(home, "exam", "add", str(public)).returncode == 0

    stored = home / "data" / f"exam_{PRIVATE}" / "test.jsonl"  # the store's copy, changed
    stored.write_text(stored.read_text().replace("stable angina", "unstable angina"))
    changed = medboard(home, "eval", "--model", "fake", "--tasks", PRIVATE)
    assert_one_line_error(changed, f"data for task '{PRIVATE}' has content hash", "expected")

    (tmp_path / "exams" / "cardio.jsonl").write_text(jsonl(RECORDS), encoding="utf-8")
    again = medboard(home, "exam", "add", str(private))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"replaced exam {PRIVATE} (Cardiology exam 2026), was 8 ")
    assert "now 2 questions" in again.stdout and "evaluated on the other data" in again.stdout
    assert len(again.stdout.strip().splitlines()) == 1
    evaluated = medboard(home, "eval", "--model", "fake", "--tasks", PRIVATE)
    assert evaluated.returncode == 0, evaluated.stderr

    kept = home / "exams" / f"{PUBLIC}.toml"
    kept.write_text(kept.read_text().replace('choices = "texts"', 'choices = "pictures"'))
    still = medboard(home, "eval", "--model", "fake", "--tasks", PRIVATE)
    assert still.returncode == 0, still.stderr
    warnings = [line for line in still.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: exam skipped: {kept}:6: choices 'pictures' is not one of letters, texts"
    ]
    listed = medboard(home, "exam", "list")
    assert "does not load" in listed.stdout

    removed = medboard(home, "exam", "remove", PUBLIC)
    assert removed.returncode == 0, removed.stderr
    assert not kept.exists() and not (home / "data" / f"exam_{PUBLIC}").exists()
    assert_one_line_error(medboard(home, "exam", "remove", PUBLIC), f"no exam '{PUBLIC}'")
    gone = medboard(home, "eval", "--model", "fake", "--tasks", PUBLIC)
    assert_one_line_error(gone, f"unknown task '{PUBLIC}'")


def test_a_bad_declaration_is_one_line_and_writes_nothing(
    medboard_home: Path, tmp_path: Path
) -> None:
    private, _ = _declare(tmp_path / "exams")
    data = tmp_path / "exams" / "cardio.jsonl"
    data.write_text(jsonl([RECORDS[0], {**RECORDS[1], "answer": "E"}]), encoding="utf-8")
    refused = medboard(medboard_home, "exam", "add", str(private))
    assert_one_line_error(
        refused, f"{data}:2: record 'c2': answer 'E' is not among its options A, B, C, D"
    )
    assert not (medboard_home / "exams").exists() and not (medboard_home / "data").exists()
    private.write_text(DECLARATION.replace('name = "cardio_exam_2026"', 'name = "pubmedqa"'))
    data.write_text(jsonl(RECORDS), encoding="utf-8")
    refused = medboard(medboard_home, "exam", "add", str(private))
    assert_one_line_error(refused, f"{private}:1: bad name 'pubmedqa': a built-in task")
    assert not (medboard_home / "exams").exists()


def _env(home: Path) -> dict[str, str]:
    import os

    return {**os.environ, "MEDBOARD_HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
