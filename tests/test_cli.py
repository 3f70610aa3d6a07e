"""The command line, as a user runs it: real processes, exit codes, one-line errors, kill -9."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, import_fixture_tasks

FAKE = ["--model", "fake", "--allow-data-mismatch"]


def medboard(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDBOARD_HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from medboard.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in " ".join(result.stderr.split()), result.stderr


def no_finished_runs(home: Path) -> bool:
    return not list((home / "runs").glob("*/result.json"))


@pytest.fixture()
def home(medboard_home: Path) -> Path:
    import_fixture_tasks(medboard_home)
    return medboard_home


def test_eval_fake_prints_table_and_writes_output(home: Path, tmp_path: Path) -> None:
    result = medboard(home, "eval", *FAKE, "--suite", "open_medical", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "mean of 9 tasks" in result.stdout
    assert "mmlu_anatomy" in result.stdout
    summary = json.loads((tmp_path / "results.json").read_text())
    assert len(summary["results"]) == 9
    assert (tmp_path / "samples_pubmedqa.jsonl").exists()


def test_eval_without_record_does_not_load_the_database_layer(home: Path) -> None:
    # SQLAlchemy and the ORM take about half a second to import; only --record needs them.
    probe = "import sys; from medboard.cli import main\ntry:\n    main()\nfinally:\n"
    probe += "    print('sqlalchemy' in sys.modules, file=sys.stderr)"
    env = {**os.environ, "MEDBOARD_HOME": str(home), "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-c", probe, "eval", *FAKE, "--tasks", "medmcqa", "--limit", "2"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "False"


def test_eval_generative_protocols(home: Path, tmp_path: Path) -> None:
    tasks = ["--tasks", "medqa_4options,pubmedqa"]
    result = medboard(home, "eval", *FAKE, *tasks, "--protocol", "cot", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "unparsed (%)" in result.stdout and "cot" in result.stdout
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["runs"]["pubmedqa"]["spec"]["protocol"] == "cot/1"
    assert "unparsed" in summary["results"]["medqa_4options"]
    shorter = medboard(
        home, "eval", *FAKE, *tasks, "--protocol", "generative", "--max-new-tokens", "2"
    )
    assert shorter.returncode == 0, shorter.stderr
    assert_one_line_error(
        medboard(home, "eval", *FAKE, *tasks, "--max-new-tokens", "2"), "not to loglik"
    )
    assert_one_line_error(
        medboard(home, "eval", *FAKE, *tasks, "--protocol", "chat"), "unknown protocol 'chat'"
    )


def test_tasks_lists_tasks_suites_and_presence(home: Path) -> None:
    result = medboard(home, "tasks")
    assert result.returncode == 0, result.stderr
    for name in ("medqa_4options", "headqa_en", "open_medical", "flowertune_medical", "differs"):
        assert name in result.stdout


@pytest.mark.parametrize(
    ("args", "meant"), [(["evl"], "'eval'"), (["fl", "rnu"], "'run'"), (["exam", "ad"], "'add'")]
)
def test_a_mistyped_command_gets_one_suggestion(
    tmp_path: Path, args: list[str], meant: str
) -> None:
    result = medboard(tmp_path, *args)
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert f"No such command '{args[-1]}'" in message, result.stderr
    assert message.count("Did you mean") == 1 and meant in message, result.stderr


@pytest.mark.parametrize(
    ("args", "summary"),
    [
        ([], "(SQLite by default); --device and -M are the workers' (as `medboard worker`)."),
        (["exam"], "into the data store (content-hashed) and register the exam as a task"),
    ],
)
def test_command_lists_show_each_summary_unbroken(
    tmp_path: Path, args: list[str], summary: str
) -> None:
    """A summary wraps where the terminal ends, not where its docstring's line ended."""
    env = {**os.environ, "MEDBOARD_HOME": str(tmp_path), "NO_COLOR": "1", "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-c", "from medboard.cli import main; main()", *args, "--help"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert summary in result.stdout, result.stdout


def test_a_long_path_stays_on_one_line(tmp_path: Path) -> None:
    """Messages are not broken at the 80 columns of a log (a path split in two cannot be
    copied); tables still fit them."""
    home = tmp_path / ("a-folder-with-a-long-name-" * 4)
    result = medboard(home, "tasks")
    assert result.returncode == 0, result.stderr
    assert f"data store: {home / 'data'}\n" in result.stdout
    lines = result.stdout.splitlines()
    tables = lines[: lines.index(f"data store: {home / 'data'}")]
    assert len(tables) > 40 and max(len(line) for line in tables) <= 80
    # and no task's name is cut to fit them
    assert " cmmlu_traditional_chinese_medicine " in result.stdout and "…" not in result.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--tasks", "medqa_5options"], ["unknown task 'medqa_5options'", "known tasks"]),
        (["--suite", "closed_medical"], ["unknown suite 'closed_medical'"]),
        (["--suite", "flowertune_medical", "--tasks", "headqa_en"], ["not in suite"]),
        ([], ["no task given"]),
    ],
)
def test_bad_task_selection(home: Path, args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(medboard(home, "eval", *FAKE, *args), *fragments)
    assert no_finished_runs(home)


def test_missing_data(medboard_home: Path) -> None:
    result = medboard(medboard_home, "eval", *FAKE, "--tasks", "pubmedqa")
    assert_one_line_error(result, "no data for task 'pubmedqa'", "medboard data import")


def test_data_hash_mismatch_is_refused(home: Path) -> None:
    result = medboard(home, "eval", "--model", "fake", "--tasks", "medqa_4options")
    assert_one_line_error(result, "content hash", "--allow-data-mismatch")
    assert no_finished_runs(home)


def test_model_path_that_does_not_exist(home: Path) -> None:
    result = medboard(home, "eval", "--model", "/nowhere/model", "--tasks", "pubmedqa")
    assert_one_line_error(result, "model path /nowhere/model does not exist")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["eval", "--model", "/nowhere/model.gguf", "--tasks", "pubmedqa"], "does not exist"),
        (["eval", "--model", "/no/m.gguf", "--dtype", "banana"], "unknown dtype 'banana'"),
        (["serve", "--submit", "/nowhere/model.gguf", "--port", "1"], "does not exist"),
    ],
    ids=["eval", "eval-dtype", "serve"],
)
def test_an_input_error_is_reported_within_a_second(
    home: Path, args: list[str], fragment: str
) -> None:
    # The bar (issue 35): one line, in under a second, before torch or the web app is
    # imported. Best of three runs, the interpreter's start included; the imports are the
    # deterministic part of the check.
    probe = "import sys; from medboard.cli import main\ntry:\n    main()\nfinally:\n"
    probe += "    heavy = {'torch', 'transformers', 'uvicorn'}\n"
    probe += "    print(sorted(heavy & set(sys.modules)), file=sys.stderr)"
    env = {**os.environ, "MEDBOARD_HOME": str(home), "NO_COLOR": "1"}
    times = []
    for _ in range(3):
        start = time.perf_counter()
        command = [sys.executable, "-c", probe, *args]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        times.append(time.perf_counter() - start)
        assert_one_line_error(result, fragment)
        assert result.stderr.splitlines()[-1] == "[]", result.stderr
    assert min(times) < 1.0, times


def test_model_that_is_not_a_causal_lm(home: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]})
    )
    result = medboard(home, "eval", "--model", str(tmp_path), "--tasks", "pubmedqa", *FAKE[2:])
    assert_one_line_error(result, "not a causal language model")
    assert no_finished_runs(home)


def test_unsupported_gguf(home: Path, tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "rwkv-ish.gguf"
    writer = gguf.GGUFWriter(str(path), "quantum_lstm")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = medboard(home, "eval", "--model", str(path), "--tasks", "pubmedqa", *FAKE[2:])
    assert_one_line_error(result, "architecture 'quantum_lstm'")
    assert no_finished_runs(home)


def test_adapter_that_does_not_fit(home: Path, tiny_model: Path, tmp_path: Path) -> None:
    from tests.backends.test_loading import _lora
    from tests.conftest import build_tiny_llama

    adapter = _lora(build_tiny_llama(tmp_path / "wide", hidden=48), tmp_path / "lora", ["q_proj"])
    result = medboard(
        home,
        "eval",
        "--model",
        str(tiny_model),
        "--adapter",
        str(adapter),
        "--tasks",
        "pubmedqa",
        *FAKE[2:],
    )
    assert_one_line_error(result, "does not fit base model")
    assert no_finished_runs(home)


def test_corrupt_jsonl_line(medboard_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "test.jsonl"
    good_line = (FIXTURES / "tasks" / "pubmedqa.jsonl").read_text().splitlines()[0]
    bad.write_text(good_line + "\n" + '{"id": "x", "question": "broken"\n')
    result = medboard(medboard_home, "data", "import", str(bad), "--dataset", "pubmedqa")
    assert_one_line_error(result, f"{bad}:2", "invalid JSON")
    assert not (medboard_home / "data" / "pubmedqa").exists()


def test_eval_tiny_model_real_backend(home: Path, tiny_model: Path, tmp_path: Path) -> None:
    result = medboard(
        home,
        "eval",
        "--model",
        str(tiny_model),
        "--tasks",
        "headqa_en,medqa_4options",
        "--allow-data-mismatch",
        "--output",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    samples = [
        json.loads(x) for x in (tmp_path / "samples_headqa_en.jsonl").read_text().splitlines()
    ]
    assert all(len(s["logprobs"]) == len(s["choices"]) for s in samples)
    assert any(s["n_tokens"][0] > 1 for s in samples)


def test_compile_on_without_a_cpp_compiler_is_one_line(
    home: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXX", str(home / "no-such-g++"))  # inductor's compiler, and its only one
    args = ["eval", "--model", str(tiny_model), "--tasks", "medqa_4options", "--limit", "2"]
    result = medboard(home, *args, "--dtype", "bfloat16", "--compile", "on")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --compile on needs a C++ compiler for the kernels torch.compile writes for the "
        "CPU ($CXX, else g++), and none works here: install g++ or pass --compile off"
    ]


def test_kill_9_then_resume_gives_identical_results(home: Path, tmp_path: Path) -> None:
    args = ["eval", "--model", "fake:delay=0.3,batch=1", "--allow-data-mismatch", "--tasks"]
    tasks = "careqa_en,medqa_4options,headqa_en"
    reference = medboard(tmp_path / "other-home", "data", "list")  # warm imports
    assert reference.returncode == 0
    env = {**os.environ, "MEDBOARD_HOME": str(home)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from medboard.cli import main; main()",
            *args,
            tasks,
            "--output",
            str(tmp_path / "killed"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    caches = home / "runs"
    deadline = time.time() + 60
    answered = 0
    while time.time() < deadline and answered < 4:  # one task finished, the next under way
        time.sleep(0.1)
        with contextlib.suppress(sqlite3.Error):
            answered = sum(_count(cache) for cache in caches.glob("*/cache.sqlite"))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert answered >= 4, "the run did not get going"
    assert len(list(caches.glob("*/result.json"))) < 3
    resumed = medboard(home, *args, tasks, "--output", str(tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr
    fresh_home = tmp_path / "fresh"
    import_fixture_tasks(fresh_home)
    fresh = medboard(fresh_home, *args, tasks, "--output", str(tmp_path / "fresh-out"))
    assert fresh.returncode == 0, fresh.stderr
    for name in (
        "samples_careqa_en.jsonl",
        "samples_medqa_4options.jsonl",
        "samples_headqa_en.jsonl",
    ):
        assert (tmp_path / "resumed" / name).read_text() == (
            tmp_path / "fresh-out" / name
        ).read_text()
    a = json.loads((tmp_path / "resumed" / "results.json").read_text())["results"]
    b = json.loads((tmp_path / "fresh-out" / "results.json").read_text())["results"]
    assert a == b


def _count(cache: Path) -> int:
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def test_progress_lines_when_not_a_terminal(home: Path) -> None:
    os.environ["MEDBOARD_LOG_EVERY"] = "0"
    try:
        result = medboard(
            home,
            "eval",
            "--model",
            "fake:batch=1",
            "--allow-data-mismatch",
            "--tasks",
            "mmlu_anatomy,headqa_en",
        )
    finally:
        del os.environ["MEDBOARD_LOG_EVERY"]
    assert result.returncode == 0, result.stderr
    assert "headqa_en: 1/3 (" in result.stderr and "q/s, ETA" in result.stderr
    lines = {line.split(" (")[0]: line for line in result.stderr.splitlines() if " (" in line}
    assert lines["headqa_en: 1/3"].endswith("ETA ?)")  # the first batch also compiles: no pace
    assert lines["headqa_en: 3/3"].endswith("ETA 0 s)")
    assert "headqa_en: 3 done in" in result.stderr


def test_import_published_cli(medboard_home: Path, tmp_path: Path) -> None:
    table = tmp_path / "board.csv"
    table.write_text("model,track,pubmedqa\norg/m,open_medical,55.0\n")
    db = f"sqlite:///{tmp_path / 'board.db'}"
    first = medboard(medboard_home, "import-published", str(table), "--db", db)
    assert first.returncode == 0, first.stderr
    assert "imported 1 published entries" in first.stdout
    again = medboard(medboard_home, "import-published", str(table), "--db", db)
    assert "imported already: nothing changed" in " ".join(again.stdout.split())
    bad = tmp_path / "bad.csv"
    bad.write_text("model,track,pubmedqa\norg/m,open_medical,155.0\n")
    assert_one_line_error(
        medboard(medboard_home, "import-published", str(bad), "--db", db),
        "bad.csv line 2",
        "not a percentage",
    )


def test_ci_runs_the_readme_test_command() -> None:
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    blocks = readme.split("```bash\n")
    test_command = blocks[2].split("\n```", 1)[0].strip()
    assert "pytest" in test_command
    assert test_command in (root / ".ci" / "run").read_text()


def test_eval_permute_and_record(home: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    result = medboard(
        home, "eval", "--model", "fake:bias=A", "--allow-data-mismatch", "--suite", "open_medical",
        "--permute", "1,2", "--record", "--db", db, "--output", str(tmp_path / "out"),
        "--name", "Always-A",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "not permuted" in result.stdout and "pubmedqa" in result.stdout
    assert "mean of 9 tasks" in result.stdout and "medqa_4options@shift2" in result.stdout
    assert "recorded as entry 1 on open_medical" in result.stdout
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["average"]["tasks"] == 9 and len(summary["results"]) == 9 + 2 * 8

    from fastapi.testclient import TestClient

    from medboard.results.db import open_database
    from medboard.web.app import create_app

    page = TestClient(create_app(open_database(db))).get("/api/model/1").json()
    assert page["entry"]["extra"] == {"protocol": "loglik/1"}
    assert page["model"]["name"] == "Always-A"  # --name, not the model spec
    robust = page["insights"]["robustness"]
    assert set(robust) == {t for t in summary["results"] if "@" not in t} - {"pubmedqa"}
    assert robust["medqa_4options"]["pred_letters"] == {"A": 1.0}


def test_eval_record_and_permute_errors(home: Path, tmp_path: Path) -> None:
    no_track = medboard(home, "eval", *FAKE, "--tasks", "pubmedqa", "--record")
    assert_one_line_error(no_track, "--record needs --suite set to a track")
    bad = medboard(home, "eval", *FAKE, "--suite", "open_medical", "--permute", "1,x")
    assert_one_line_error(bad, "--permute takes shifts like 1,2,3")
    unrecorded = medboard(home, "eval", *FAKE, "--suite", "open_medical", "--name", "x")
    assert_one_line_error(unrecorded, "--name names the entry --record stores")
    long = medboard(home, "eval", *FAKE, "--suite", "open_medical", "--record", "--name", "x" * 301)
    assert_one_line_error(long, "name is too long (301 characters, at most 300)")
    assert no_finished_runs(home)


# Input errors: one line, no traceback, nothing stored (issue 33).

LONG = "m" * 256  # a path component one byte over what a file name can be (ENAMETOOLONG)


def assert_only_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """The whole of stderr is the one error line."""
    assert_one_line_error(result, *fragments)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        (f"/tmp/{LONG}", "longer than 255 bytes"),
        (f"org/{LONG}", "longer than 255 bytes"),  # no Hub id is that long either
        (f"{LONG}.gguf", "longer than 255 bytes"),
        ("~no-such-user-here/model", "does not exist"),  # was RuntimeError from expanduser
    ],
)
def test_eval_of_a_model_name_the_system_cannot_look_up(
    home: Path, model: str, fragment: str
) -> None:
    """Was a 51-line traceback (OSError ENAMETOOLONG from Path.is_dir())."""
    result = medboard(home, "eval", "--model", model, "--tasks", "pubmedqa", *FAKE[2:])
    assert_only_one_line(result, "does not exist", fragment)
    assert no_finished_runs(home)


def _submissions(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute("select count(*) from submissions").fetchone()[0]


@pytest.mark.parametrize("model", [f"/tmp/{LONG}", f"org/{'m' * 290}", "/tmp/a\x01b"])
def test_submit_of_a_model_name_the_system_cannot_look_up(
    medboard_home: Path, tiny_model: Path, tmp_path: Path, model: str
) -> None:
    db = tmp_path / "board.db"
    result = medboard(medboard_home, "submit", model, "--db", f"sqlite:///{db}")
    assert_only_one_line(result, "cannot be submitted" if "\x01" not in model else "control")
    assert _submissions(db) == 0
    adapter = medboard(
        medboard_home, "submit", str(tiny_model), "--adapter", f"/tmp/{LONG}", "--db",
        f"sqlite:///{db}",
    )  # fmt: skip
    assert_only_one_line(adapter, "not a PEFT adapter directory")
    assert _submissions(db) == 0


def test_data_import_of_a_file_that_is_not_utf8(medboard_home: Path, tmp_path: Path) -> None:
    """Was a 60-line UnicodeDecodeError; now the file, the line and the byte, and the split
    stored before is kept as it was."""
    lines = (FIXTURES / "tasks" / "pubmedqa.jsonl").read_text().splitlines(keepends=True)
    good = tmp_path / "good" / "test.jsonl"
    good.parent.mkdir()
    good.write_text("".join(lines[:3]))
    assert (
        medboard(medboard_home, "data", "import", str(good), "--dataset", "pubmedqa").returncode
        == 0
    )
    stored = medboard_home / "data" / "pubmedqa"
    before = {p.name: p.read_bytes() for p in stored.iterdir()}
    bad = tmp_path / "test.jsonl"
    head = "".join(lines[:2]).encode()
    bad.write_bytes(head + b'{"id": "x\xff"}\n' + lines[2].encode())
    result = medboard(medboard_home, "data", "import", str(bad), "--dataset", "pubmedqa")
    offset = len(head) + len(b'{"id": "x')
    assert_only_one_line(result, f"{bad}:3: not UTF-8 text (byte 0xff at byte offset {offset})")
    assert {p.name: p.read_bytes() for p in stored.iterdir()} == before


def test_data_import_of_odd_paths(medboard_home: Path, tmp_path: Path) -> None:
    for path in (f"/tmp/{LONG}/x.jsonl", f"/tmp/{LONG}", "/tmp/nowhere\x01.jsonl"):
        assert_only_one_line(
            medboard(medboard_home, "data", "import", path), "no such file or folder"
        )
    folder = tmp_path / "folder.jsonl"  # a folder where a file is expected
    folder.mkdir()
    assert_only_one_line(medboard(medboard_home, "data", "import", str(folder)), "no data")
    assert not (medboard_home / "data").exists()


def test_a_database_that_cannot_be_opened(medboard_home: Path, tmp_path: Path) -> None:
    for url in (
        f"sqlite:///{tmp_path}/no/such/folder/board.db",
        "nosuchdriver://x/y",
        f"sqlite:///{tmp_path}",  # a folder
        "postgresql+psycopg://nobody:x@127.0.0.1:1/none",
        "mysql://nobody:hunter2@127.0.0.1:1/none",  # no driver for it
    ):
        result = medboard(medboard_home, "submit", "fake", "--db", url)
        assert_only_one_line(result, "database")
        said = result.stdout + result.stderr
        assert ":x@" not in said and "hunter2" not in said  # passwords hidden
    assert "nobody:***@127.0.0.1:1/none" in result.stderr


def test_import_published_of_a_folder_or_a_file_that_is_not_utf8(
    medboard_home: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    assert_only_one_line(
        medboard(medboard_home, "import-published", str(tmp_path), "--db", db), "does not exist"
    )
    table = tmp_path / "board.csv"
    table.write_bytes(b"model,track,pubmedqa\norg/m\xe9,open_medical,55.0\n")
    result = medboard(medboard_home, "import-published", str(table), "--db", db)
    assert_only_one_line(result, f"{table}:2: not UTF-8 text (byte 0xe9 at byte offset 26)")
    long = medboard(medboard_home, "import-published", f"/tmp/{LONG}.csv", "--db", db)
    assert_only_one_line(long, "File name too long")


def test_compare_of_broken_outputs(medboard_home: Path, tmp_path: Path) -> None:
    first = tmp_path / "a"
    first.mkdir()
    (first / "results.json").write_text(json.dumps({"results": {"pubmedqa": {}}}))
    (first / "samples_pubmedqa.jsonl").write_text('{"id": "q0"}\n{"id": \n')
    result = medboard(medboard_home, "compare", str(first), str(first))
    assert_only_one_line(result, "samples_pubmedqa.jsonl:2: invalid JSON")
    (first / "samples_pubmedqa.jsonl").write_bytes(b'{"id": "q\xff"}\n')
    assert_only_one_line(medboard(medboard_home, "compare", str(first), str(first)), "UTF-8")
    (first / "results.json").write_text("[1, 2]")
    result = medboard(medboard_home, "compare", str(first), str(first))
    assert_only_one_line(result, "is not a results.json written by eval --output")


def test_compare_report_into_a_folder(medboard_home: Path, tmp_path: Path) -> None:
    output = tmp_path / "a"
    output.mkdir()
    (output / "results.json").write_text(json.dumps({"results": {"pubmedqa": {}}}))
    sample = {"id": "q0", "pred": 0, "gold": 0, "acc": 1.0}
    (output / "samples_pubmedqa.jsonl").write_text(json.dumps(sample) + "\n")
    result = medboard(medboard_home, "compare", str(output), str(output), "--json", str(tmp_path))
    assert_one_line_error(result, "cannot write the report to", "Is a directory")


def test_contamination_corpus_that_is_not_utf8(home: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"some text\nmore \xff text\n")
    result = medboard(
        home, "contamination", str(corpus), "--tasks", "pubmedqa", "--allow-data-mismatch"
    )
    assert_only_one_line(result, f"{corpus}:2: not UTF-8 text (byte 0xff at byte offset 15)")


def test_plain_progress_shows_no_rate_before_one_is_known() -> None:
    from types import SimpleNamespace

    from medboard.cli_eval import _progress_line

    task = SimpleNamespace(description="medqa_4options", completed=0, total=1273, speed=None,
                           fields={"eta": None})  # fmt: skip
    assert _progress_line(task) == "medqa_4options: 0/1273 (- q/s, ETA ?)"
    task.speed, task.fields["eta"], task.completed = 3.14, 400, 16
    assert _progress_line(task) == "medqa_4options: 16/1273 (3.1 q/s, ETA 400 s)"
