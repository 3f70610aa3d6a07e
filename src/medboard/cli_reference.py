"""The command-line reference page, generated from the CLI itself: every command, its arguments and
options with their help, as `--help` gives them.

    python -m medboard.cli_reference --write   # rewrite docs/reference/cli.md
    python -m medboard.cli_reference --check   # exit 1 when the page and the CLI differ

tests/test_cli_reference.py fails when the page and the CLI differ, so an option cannot be added
without its documentation.
"""

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import typer.main

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli.md"

HEADER = """# Command-line reference

Every `medboard` command with its arguments and options, generated from the command line itself
(`python -m medboard.cli_reference --write`; a test fails when this page and `--help` differ).
Errors caused by input (an unknown task, a missing file, a model that is not a causal LM ...) are
one line on stderr and exit code 1, with nothing recorded as finished. The tutorials show the
commands at work: [evaluate models](../tutorials/evaluate-models.md),
[run a leaderboard](../tutorials/run-a-leaderboard.md),
[the federated track](../tutorials/federated-team.md),
[add your exam](../tutorials/add-your-exam.md).
"""


def commands(
    command: click.Command, path: tuple[str, ...] = ("medboard",)
) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """Each command under `command`, depth first in the order `--help` lists them, with the
    context its help is rendered in."""
    ctx = click.Context(command, info_name=" ".join(path))
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, (*path, name))


def _cell(text: str) -> str:
    # typer escapes rich markup ("\\[default: 0]"); markdown needs only the table's bars escaped
    return " ".join(text.split()).replace("\\[", "[").replace("|", "\\|")


def _section(path: tuple[str, ...], command: click.Command, ctx: click.Context) -> list[str]:
    level = "#" * min(len(path) + 1, 4)
    lines = [f"{level} `{' '.join(path)}`", ""]
    text = (command.help or "").strip()
    if text:
        lines += [" ".join(line.strip() for line in text.splitlines()).strip(), ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += ["```", f"{' '.join(path)} {usage}".rstrip(), "```", ""]
    if isinstance(command, click.Group):
        listed = [
            (name, sub)
            for name in command.list_commands(ctx)
            if (sub := command.get_command(ctx, name)) is not None and not sub.hidden
        ]
        lines += ["| command | what it does |", "|---|---|"]
        for name, sub in listed:
            anchor = "-".join((*path, name)).replace("_", "-")
            summary = _cell(sub.get_short_help_str(limit=200))
            lines.append(f"| [`{name}`](#{anchor}) | {summary} |")
        return [*lines, ""]
    rows = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False) or "--help" in param.opts:
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        rows.append(f"| `{_cell(names)}` | {_cell(help_text)} |")
    if rows:
        lines += ["| argument / option | meaning |", "|---|---|", *rows, ""]
    return lines


def render() -> str:
    """The whole page."""
    from medboard.cli import app

    root = typer.main.get_command(app)
    lines = [HEADER]
    for path, command, ctx in commands(root):
        lines += _section(path, command, ctx)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--write", action="store_true", help=f"rewrite {PAGE}")
    what.add_argument("--check", action="store_true", help="exit 1 when the page differs")
    args = parser.parse_args(argv)
    page = render()
    if args.write:
        PAGE.parent.mkdir(parents=True, exist_ok=True)
        PAGE.write_text(page, encoding="utf-8")
        print(f"wrote {PAGE}")
    elif args.check:
        if not PAGE.is_file() or PAGE.read_text(encoding="utf-8") != page:
            print(f"{PAGE} differs from the CLI: run python -m medboard.cli_reference --write")
            return 1
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
