import re
from pathlib import Path

import typer.main
from typer.testing import CliRunner

from medboard.federated.cli import fl_app
from tests.federated.helpers import REPO, write_benchmarks

runner = CliRunner()


def test_every_fl_command_and_option_is_documented() -> None:
    docs = (REPO / "docs" / "explanation" / "federated.md").read_text(encoding="utf-8")
    group = typer.main.get_command(fl_app)
    assert set(group.commands) == {
        "prepare-data", "run", "evaluate", "submit", "partition", "deploy"
    }  # fmt: skip
    for name, command in group.commands.items():
        heading = re.search(rf"^### `medboard fl {name}\b.*`$", docs, re.MULTILINE)
        assert heading, name
        for param in command.params:
            for option in param.opts:
                if option.startswith("--"):
                    assert option in heading.group(0), (name, option)


def test_prepare_data_prints_the_hash(tmp_path: Path) -> None:
    benchmarks = write_benchmarks(tmp_path / "bench", per_file=4)
    args = ["prepare-data", "--benchmarks", str(benchmarks), "--out", str(tmp_path / "out")]
    result = runner.invoke(fl_app, args)
    assert result.exit_code == 0, result.output
    assert "29 pairs in" in result.stdout and re.search(r"sha256 [0-9a-f]{64}", result.stdout)
    missing = runner.invoke(fl_app, ["prepare-data", "--benchmarks", str(tmp_path / "none")])
    assert missing.exit_code == 1
    assert missing.stderr.strip().startswith("error: missing dataset: no benchmark folder")
