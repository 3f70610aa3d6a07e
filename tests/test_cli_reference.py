"""docs/reference/cli.md is generated from the CLI: it must say what `--help` says."""

import subprocess
import sys

import typer

from medboard import cli_reference
from medboard.cli import app


def _documented_options() -> list[tuple[str, str]]:
    """(command, option) for every visible option of every command."""
    found = []
    for path, command, ctx in cli_reference.commands(typer.main.get_command(app)):
        for param in command.get_params(ctx):
            if not getattr(param, "hidden", False) and "--help" not in param.opts:
                found.extend((" ".join(path), opt) for opt in param.opts if opt.startswith("-"))
    return found


def test_the_page_is_what_the_cli_says() -> None:
    page = cli_reference.PAGE.read_text(encoding="utf-8")
    for command, option in _documented_options():
        section = page.split(f"`{command}`\n", 1)[-1].split("\n#", 1)[0]
        assert f"{option}" in section, (
            f"{option} of {command} is not in {cli_reference.PAGE.name}: "
            "run python -m medboard.cli_reference --write"
        )
    assert page == cli_reference.render(), (
        f"{cli_reference.PAGE} differs from the CLI: run python -m medboard.cli_reference --write"
    )


def test_every_command_has_a_section() -> None:
    page = cli_reference.PAGE.read_text(encoding="utf-8")
    paths = [" ".join(p) for p, _, _ in cli_reference.commands(typer.main.get_command(app))]
    assert len(paths) >= 20
    for path in paths:
        assert f"`{path}`\n" in page, f"{path} has no section"


def test_check_mode_exits_1_on_a_stale_page(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cli_reference, "PAGE", tmp_path / "cli.md")
    assert cli_reference.main(["--check"]) == 1
    assert cli_reference.main(["--write"]) == 0
    assert cli_reference.main(["--check"]) == 0
    (tmp_path / "cli.md").write_text(cli_reference.render().replace("--limit", "--lim"))
    assert cli_reference.main(["--check"]) == 1


def test_the_module_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "medboard.cli_reference", "--check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
