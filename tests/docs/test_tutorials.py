"""The tutorials (docs/tutorials/*.md) are run, not only read.

Each tutorial's ```bash blocks run in order in one bash shell (`set -euo pipefail`: a failing
command fails the test), in a temporary folder laid out like a clone's root (`flower/` copied,
`constraints.txt` linked, `../shared` linked to the shared benchmarks and models), with a
temporary MEDBOARD_HOME (its model cache shared between the tutorials). In a ```console block
the lines that start with `$ ` run and the rest is output shown to the reader. Other blocks (text,
toml, ini) are read only. Background processes (`&`) are stopped when the tutorial's shell exits.

What cannot run here verbatim says so in the markdown, in an HTML comment right before the block
(invisible on the site), and stays rare:

    <!-- tutorial: file PATH -->          write the next block (a TOML, a unit file) to PATH
    <!-- tutorial: skip REASON -->        do not run the next block; the test prints REASON
    <!-- tutorial: needs VAR REASON -->   run the next block only when $VAR is set, else skip it
    <!-- tutorial: replace OLD NEW -->    in the next block, OLD becomes NEW (shell words; NEW may
                                          name the test's variables, below)
    <!-- tutorial: replace-all OLD NEW --> the same in every block after it (may stand anywhere)

The test's variables (in NEW, filled in when the script is written): TUTORIAL_DB
(MEDBOARD_TEST_POSTGRES, wiped first, else the home's SQLite database), TUTORIAL_SQLITE (1 without
PostgreSQL), TUTORIAL_PG_DUMP_URL (the PostgreSQL URL as pg_dump spells it; empty without it),
TUTORIAL_MEDBOARD (the medboard executable),
TUTORIAL_PORT and TUTORIAL_PORT2 (free ports), MEDBOARD_TEST_LLAMACPP / MEDBOARD_TEST_VLLM (the
model servers' Pythons, .ci/servers.sh) when set.
"""

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TUTORIALS = REPO / "docs" / "tutorials"
SHARED = REPO.parent / "shared"
RUN_LANGUAGES = {"bash", "console"}
FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*tutorial:\s*(.*?)\s*-->\s*$")
SMOLLM2 = (
    Path.home() / ".cache/medical-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
)


@dataclass
class Block:
    language: str
    text: str
    line: int  # of the opening fence, 1-based
    directives: list[list[str]] = field(default_factory=list)


def parse(markdown: str) -> list[Block]:
    """The fenced blocks of a tutorial with the directives right before each (blank lines and
    other directives may sit between; a replace-all may stand anywhere)."""
    blocks: list[Block] = []
    pending: list[list[str]] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE.match(line)
        fence = FENCE.match(line)
        if directive:
            kind, _, rest = directive.group(1).partition(" ")
            # a reason is free text (apostrophes included); replacements are shell words
            words = rest.split() if kind in ("skip", "needs") else shlex.split(rest)
            pending.append([kind, *words])
        elif fence:
            end = i + 1
            while end < len(lines) and lines[end].rstrip() != "```":
                end += 1
            if end == len(lines):
                raise ValueError(f"line {i + 1}: unclosed ``` block")
            text = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(fence.group(1), text, i + 1, pending))
            pending = []
            i = end
        elif line.strip() and any(words[0] != "replace-all" for words in pending):
            raise ValueError(f"line {i + 1}: a tutorial directive must precede a ``` block")
        i += 1
    if pending:
        raise ValueError("a tutorial directive at the end of the file, with no block after it")
    return blocks


def script(blocks: list[Block], env: dict[str, str]) -> tuple[str, list[str]]:
    """The bash script of a tutorial, and the lines saying which blocks were skipped and why."""
    parts = [
        "set -euo pipefail",
        # background processes of the tutorial (a server, a worker) end with its shell
        "trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT",
    ]
    skipped: list[str] = []
    replace_all: list[tuple[str, str]] = []
    for block in blocks:
        replacements = list(replace_all)
        run, target = block.language in RUN_LANGUAGES, None
        for words in block.directives:
            kind, args = words[0], words[1:]
            if kind == "skip":
                run, reason = False, " ".join(args)
                skipped.append(f"line {block.line}: skipped: {reason}")
            elif kind == "needs":
                if not env.get(args[0]):
                    run = False
                    skipped.append(f"line {block.line}: {args[0]} not set: {' '.join(args[1:])}")
            elif kind in ("replace", "replace-all"):
                assert len(args) == 2, f"line {block.line}: {kind} takes OLD NEW"
                # the test's variables in NEW are filled in here, so a file block gets them too
                new = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), m.group(0)), args[1])
                pair = (args[0], new)
                replacements.append(pair)
                if kind == "replace-all":
                    replace_all.append(pair)
            elif kind == "file":
                target = args[0]
            else:
                raise ValueError(f"line {block.line}: unknown tutorial directive {kind!r}")
        text = block.text
        for old, new in replacements:
            text = text.replace(old, new)
        if target is not None:
            parts.append(f"echo '### line {block.line}: file {target}'")
            parts.append(f'mkdir -p "$(dirname {target})"')
            parts.append(f"cat > {target} <<'TUTORIAL_FILE_END'\n{text}TUTORIAL_FILE_END")
        elif run:
            if block.language == "console":
                text = "".join(
                    line[2:] + "\n" for line in text.splitlines() if line.startswith("$ ")
                )
            parts.append(f"echo '### line {block.line}'")
            parts.append(text)
    parts.append("echo '### tutorial done'")
    return "\n".join(parts) + "\n", skipped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wiped_postgres(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def shared_machine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One machine cache for every tutorial's home: SmolLM2's GGUF is dequantized once."""
    return tmp_path_factory.mktemp("tutorial-machine-cache")


def run_tutorial(name: str, tmp_path: Path, machine_cache: Path) -> None:
    if not (SHARED / "benchmarks").is_dir():
        pytest.skip(f"no shared benchmarks at {SHARED / 'benchmarks'}")
    markdown = (TUTORIALS / name).read_text(encoding="utf-8")
    # the federated app's base model is this file too
    if ("medical-models" in markdown or "fl run" in markdown) and not SMOLLM2.is_file():
        pytest.skip(f"no SmolLM2 GGUF at {SMOLLM2} (bash ../shared/models/get-models.sh)")
    root = tmp_path / "medboard"
    root.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    (root / "constraints.txt").symlink_to(REPO / "constraints.txt")
    shutil.copytree(REPO / "flower", root / "flower")  # a tutorial copies it, as from a clone
    home = tmp_path / "home"
    home.mkdir()
    postgres = os.environ.get("MEDBOARD_TEST_POSTGRES", "")
    sqlite = f"sqlite:///{home}/medboard.db"
    env = {
        **os.environ,
        "MEDBOARD_HOME": str(home),
        "MEDBOARD_MACHINE_CACHE": str(machine_cache),  # GGUF models dequantized once
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
        "TUTORIAL_DB": wiped_postgres(postgres) if postgres else sqlite,
        "TUTORIAL_SQLITE": "" if postgres else "1",
        "TUTORIAL_MEDBOARD": str(Path(sys.executable).parent / "medboard"),
        "TUTORIAL_PG_DUMP_URL": postgres.replace("postgresql+psycopg://", "postgresql://"),
        "TUTORIAL_PORT": str(free_port()),
        "TUTORIAL_PORT2": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    for variable in ("MEDBOARD_DB", "MEDBOARD_ADMIN_TOKEN", "MEDBOARD_REQUIRE_APPROVAL"):
        env.pop(variable, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    blocks = parse(markdown)
    text, skipped = script(blocks, env)
    (tmp_path / "tutorial.sh").write_text(text, encoding="utf-8")
    started = time.time()
    done = subprocess.run(
        ["bash", str(tmp_path / "tutorial.sh")], cwd=root, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
    )  # fmt: skip
    (tmp_path / "tutorial.log").write_text(done.stdout, encoding="utf-8")
    print(f"{name}: {time.time() - started:.0f} s; {len(skipped)} block(s) not run")
    for line in skipped:
        print(f"  {line}")
    if done.returncode != 0:
        markers = re.findall(r"^### (line \d+.*)$", done.stdout, re.MULTILINE)
        where = markers[-1] if markers else "before the first block"
        pytest.fail(
            f"{name}: the block at {where} failed (exit {done.returncode}); "
            f"script {tmp_path / 'tutorial.sh'}\n{done.stdout[-6000:]}"
        )
    assert done.stdout.rstrip().endswith("### tutorial done"), done.stdout[-3000:]
    shutil.rmtree(tmp_path / "hf-datasets", ignore_errors=True)


@pytest.mark.parametrize(
    "name",
    ["evaluate-models.md", "run-a-leaderboard.md", "federated-team.md", "add-your-exam.md"],
)
def test_tutorial_runs(name: str, tmp_path: Path, shared_machine_cache: Path) -> None:
    run_tutorial(name, tmp_path, shared_machine_cache)


def test_every_tutorial_is_run() -> None:
    names = {path.name for path in TUTORIALS.glob("*.md")}
    assert names == {
        "evaluate-models.md", "run-a-leaderboard.md", "federated-team.md", "add-your-exam.md"
    }  # fmt: skip


def test_a_failing_command_fails_the_script(tmp_path: Path) -> None:
    """The harness can fail: a block whose middle command fails stops the script there."""
    markdown = "```bash\ntrue\nfalse\necho unreachable\n```\n\n```bash\necho never\n```\n"
    text, _ = script(parse(markdown), {})
    path = tmp_path / "t.sh"
    path.write_text(text)
    done = subprocess.run(["bash", str(path)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "### line 1" in done.stdout and "unreachable" not in done.stdout
    assert "never" not in done.stdout and "tutorial done" not in done.stdout


def test_directives() -> None:
    markdown = (
        "<!-- tutorial: skip needs a GPU -->\n```bash\ngpu-only\n```\n"
        "<!-- tutorial: needs SOME_VAR a server -->\n```bash\nserved\n```\n"
        '<!-- tutorial: replace-all 8000 "$TUTORIAL_PORT" -->\n'
        "<!-- tutorial: replace x.db y.db -->\n```bash\ncurl :8000/ x.db\n```\n"
        "```console\n$ echo :8000\noutput\n```\n"
        '<!-- tutorial: file a/b.toml -->\n```toml\nname = "x"\n```\n```text\nnot run\n```\n'
    )
    text, skipped = script(parse(markdown), {})
    assert "gpu-only" not in text and "served" not in text and "not run" not in text
    assert "curl :$TUTORIAL_PORT/ y.db" in text and "echo :$TUTORIAL_PORT\n" in text
    assert "output" not in text and "cat > a/b.toml" in text
    assert skipped == [
        "line 2: skipped: needs a GPU", "line 6: SOME_VAR not set: a server"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="must precede"):
        parse("<!-- tutorial: skip x -->\ntext\n```bash\nls\n```\n")
