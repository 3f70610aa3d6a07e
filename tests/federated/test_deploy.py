"""The deployment engine (`medboard fl deploy`), with real processes: a SuperLink and 3 SuperNodes
on 127.0.0.1, TLS with a CA made for the run, SuperNode authentication, one data file per site.

Its communication report equals the simulation's (`medboard fl run`, same app and config) byte for
byte. Both runs start from a shell whose PATH lacks the venv (issue 36): the Flower processes
find `flower-superexec` because medboard puts the interpreter's bin folder first on their PATH.
"""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medboard.federated.cli import fl_app
from medboard.federated.comm import REPORT_FILE
from medboard.federated.config import BYTES_PER_GB
from medboard.federated.deploy import deploy_app
from medboard.federated.pki import make_ca
from medboard.federated.server_app import RUN_FILE
from tests.federated.helpers import command_env, error_line
from tests.federated.test_server import WIRE_BYTES

runner = CliRunner()
SITES = 3
ROUNDS = 2
BARE_PATH = "/usr/bin:/bin"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    # no venv on PATH, as in a fresh shell
    with command_env(tmp_path_factory.mktemp("fl-deploy"), PATH=BARE_PATH) as root:
        yield root


@pytest.fixture(scope="module")
def app(env: Path, fl_setup) -> Path:
    static = fl_setup.static(**{"num-clients": SITES})
    return fl_setup.app(env / "app", env / "unused", static, **{"num-server-rounds": ROUNDS})


def _timed(args: list[str]) -> tuple[object, float]:
    started = time.time()
    result = runner.invoke(fl_app, args)
    return result, time.time() - started


@pytest.fixture(scope="module")
def simulated(env: Path, app: Path) -> Path:
    out = env / "sim"
    args = ["run", str(app), "--out", str(out), "--reference", str(app), "--quiet"]
    result, wall = _timed(args)
    assert result.exit_code == 0, result.output
    print(f"fl run (simulation, {SITES} sites, {ROUNDS} rounds): {wall:.1f} s")
    return out


@pytest.fixture(scope="module")
def deployed(env: Path, app: Path) -> Path:
    out = env / "deploy"
    args = ["deploy", str(app), "--out", str(out), "--reference", str(app), "--quiet"]
    result, wall = _timed(args)
    assert result.exit_code == 0, result.output
    print(f"fl deploy ({SITES} SuperNodes, TLS, auth, {ROUNDS} rounds): {wall:.1f} s")
    return out


def test_fl_run_works_without_the_venv_on_path(simulated: Path) -> None:
    assert os.environ["PATH"] == BARE_PATH
    state = json.loads((simulated / RUN_FILE).read_text())
    assert state["status"] == "finished" and len(state["sites"]) == SITES


def test_deployment_report_equals_the_simulation_byte_for_byte(
    simulated: Path, deployed: Path
) -> None:
    state = json.loads((deployed / RUN_FILE).read_text())
    assert state["status"] == "finished"
    assert sorted(state["sites"].values()) == list(range(SITES))
    assert (deployed / "adapter" / "adapter_model.safetensors").is_file()
    assert (deployed / REPORT_FILE).read_bytes() == (simulated / REPORT_FILE).read_bytes()
    # Same partitions, seeds and site order: the same adapter, bit for bit (CPU).
    weights = "adapter/adapter_model.safetensors"
    assert (deployed / weights).read_bytes() == (simulated / weights).read_bytes()
    # Each SuperNode had its own file: simulation's partition of that site, nothing else.
    record = json.loads((deployed / "deployment.json").read_text())
    assert [s["data"] for s in record["sites"]] == [
        str(deployed / "sites" / f"site-{i}.jsonl") for i in range(SITES)
    ]
    for number in range(SITES):
        log = (deployed / f"supernode-{number}.log").read_text()
        assert f"site-{number}.jsonl" not in log or "data-path" not in log  # no data in logs
    losses = [[r["train_loss"] for r in json.loads((run / RUN_FILE).read_text())["rounds"]]
              for run in (simulated, deployed)]  # fmt: skip
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_a_site_that_does_not_trust_the_superlink_is_refused(env: Path, app: Path) -> None:
    other = make_ca(env / "other-ca", "another CA")
    out = env / "untrusted"
    result = runner.invoke(
        fl_app,
        ["deploy", str(app), "--out", str(out), "--reference", str(app), "--quiet"]
        + ["--site-root-cert", f"1={other.ca_cert}"],
    )
    line = error_line(result)
    assert "site 1 (" in line and "does not trust the SuperLink's certificate" in line
    assert not (out / RUN_FILE).exists()


def test_a_site_whose_key_is_not_registered_is_refused(env: Path, app: Path) -> None:
    out = env / "unregistered"
    result = runner.invoke(
        fl_app,
        ["deploy", str(app), "--out", str(out), "--reference", str(app), "--quiet"]
        + ["--unregistered-site", "1"],
    )
    line = error_line(result)
    assert line.startswith(f"error: site 1 ({out / 'sites' / 'site-1.jsonl'}): ")
    assert f"the SuperLink refused the SuperNode's key: {out / 'tls' / 'site-1.pub'}" in line
    assert "is not registered with it" in line
    assert not (out / RUN_FILE).exists()
    nodes = [s["node_id"] for s in json.loads((out / "deployment.json").read_text())["sites"]]
    assert nodes[1] == 0 and all(nodes[i] for i in (0, 2))  # the others were registered


def test_options_naming_a_site_the_run_lacks_are_refused(env: Path, app: Path) -> None:
    base = ["deploy", str(app), "--out", str(env / "no-site"), "--reference", str(app)]
    line = error_line(runner.invoke(fl_app, [*base, "--site-root-cert", f"{SITES}=ca.crt"]))
    assert (
        line
        == f"error: --site-root-cert names site {SITES}, but the run has {SITES} sites (0 to 2)"
    )
    line = error_line(runner.invoke(fl_app, [*base, "--unregistered-site", "7"]))
    assert (
        line == f"error: --unregistered-site names site 7, but the run has {SITES} sites (0 to 2)"
    )
    assert not (env / "no-site" / RUN_FILE).exists()


def test_missing_and_malformed_site_files_are_refused(env: Path, app: Path) -> None:
    sites = env / "bad-sites"
    sites.mkdir()
    pair = json.dumps({"instruction": "Q?\nAnswer:", "response": " A"}) + "\n"
    (sites / "site-0.jsonl").write_text(pair)
    args = ["deploy", str(app), "--sites", str(sites), "--reference", str(app), "--quiet"]
    args += ["--out", str(env / "bad-out")]
    assert error_line(runner.invoke(fl_app, args)).startswith(
        f"error: site 1: missing dataset: the site's data file {sites / 'site-1.jsonl'}"
    )
    (sites / "site-1.jsonl").write_text(pair + '{"instruction": "no response"}\n')
    line = error_line(runner.invoke(fl_app, args))
    assert f"site 1: malformed site data: {sites / 'site-1.jsonl'}:2 is not an instruction" in line
    assert not (env / "bad-out" / RUN_FILE).exists()


def _kill_in_round_two(out: Path, processes: list[subprocess.Popen]) -> None:
    def watch() -> None:
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                report = json.loads((out / REPORT_FILE).read_text())
            except (OSError, ValueError):
                report = {"rounds": []}
            if len(report["rounds"]) >= 2:  # round 2's training messages are out
                processes[1].send_signal(signal.SIGKILL)
                return
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def test_a_site_that_dies_mid_round_is_named_and_nothing_finishes(
    env: Path, app: Path, fl_setup
) -> None:
    from medboard.errors import MedboardError

    out = env / "dead"
    started = time.time()
    with pytest.raises(MedboardError) as caught:
        deploy_app(
            app,
            {},
            app,
            out,
            on_running=lambda processes: _kill_in_round_two(out, processes),
        )
    wall = time.time() - started
    reason = str(caught.value)
    print(f"dead site: {wall:.1f} s; {reason}")
    site_file = out / "sites" / "site-1.jsonl"
    assert reason.startswith(f"site 1 ({site_file}) died: its SuperNode exited with code -9")
    assert "round 2 train: site 1 failed: the SuperLink declared the site unavailable" in reason
    state = json.loads((out / RUN_FILE).read_text())
    assert state["status"] == "failed" and "site 1 failed" in state["reason"]
    assert not (out / "adapter").exists()
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["status"] == "stopped"
    assert report["rounds"][1]["train"]["up"]["messages"] == SITES - 1


def test_an_exceeded_budget_stops_the_deployed_run_before_sending(env: Path, fl_setup) -> None:
    # Round 1 (3 down, 3 up, 3 evaluate down) fits; round 2's training does not.
    budget = (3 * SITES * WIRE_BYTES + WIRE_BYTES) / BYTES_PER_GB
    static = fl_setup.static(**{"num-clients": SITES, "comm-budget-gb": budget})
    tight = fl_setup.app(env / "tight", env / "unused", static, **{"num-server-rounds": ROUNDS})
    out = env / "tight-run"
    result, wall = _timed(
        ["deploy", str(tight), "--out", str(out), "--reference", str(tight), "--quiet"]
    )
    print(f"budget stop on the deployment engine: {wall:.1f} s")
    line = error_line(result)
    assert "communication budget exceeded: round 2 train would send" in line
    assert line.endswith("stopped before sending")
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["status"] == "stopped" and report["total"]["bytes"] == 3 * SITES * WIRE_BYTES
    assert json.loads((out / RUN_FILE).read_text())["status"] == "failed"
    assert not (out / "adapter").exists()
