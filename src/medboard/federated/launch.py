"""`medboard fl run`: one `flwr run` on the simulation engine, with nothing left running after.

Flower's `flwr run` against its default local connection starts a detached SuperLink that
outlives the command. medboard starts its own SuperLink instead (a child process in its own
session, on free loopback ports, runtime dependency installation disabled, with a private
FLWR_HOME under the run folder), points `flwr run --stream` at it, and stops it and every
process it started (the simulation process and Ray's) when the run ends, fails or is
interrupted.

Before anything starts, the run config is checked: `--run-config` may not touch the static
section, the static section must equal the track's reference, the training data must exist and
match its pinned hash.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medboard.errors import MedboardError
from medboard.federated.comm import REPORT_FILE
from medboard.federated.config import (
    FlConfig,
    Value,
    app_run_config,
    check_overrides,
    check_static,
    format_overrides,
    load_app,
    static_of,
)
from medboard.federated.data import check_dataset
from medboard.federated.server_app import ADAPTER_DIR, RUN_FILE

CONNECTION = "medboard"
MARKER_VAR = "MEDBOARD_FL_RUN"
STARTUP_SECONDS = 60.0
# Seconds flwr run may stream on once the ServerApp has written its outcome.
SERVER_END_GRACE = 5.0


@dataclass(frozen=True)
class RunOutcome:
    out: Path
    state: dict[str, Any]
    wall_seconds: float


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def simulation_settings(app: Path, num_clients: int) -> dict[str, Value]:
    """`[tool.medboard.simulation]` of the app, with num-supernodes = static.num-clients."""
    table = load_app(app).get("tool", {}).get("medboard", {}).get("simulation", {})
    settings: dict[str, Value] = {k: v for k, v in table.items() if k != "num-supernodes"}
    settings["num-supernodes"] = num_clients
    return settings


def prepare_run(
    app: Path, overrides: dict[str, Value], reference: Path, out: Path | None
) -> tuple[FlConfig, dict[str, Value], Path]:
    """Every check that can fail before a process starts; returns (config, overrides, out)."""
    config = app_run_config(app)
    check_overrides(overrides, config)
    check_static(static_of(config), static_of(app_run_config(reference)), str(reference))
    fused = {**config, **overrides}
    cfg = FlConfig.from_run_config(fused)
    data_file = check_dataset(cfg.static.dataset, cfg.data_path, cfg.static.dataset_sha256)
    folder = (out or Path(cfg.out_dir)).expanduser().resolve()
    final = dict(overrides)
    final["out-dir"] = str(folder)
    if data_file is not None:
        final["data-path"] = str(data_file.resolve())
    return FlConfig.from_run_config({**config, **final}), final, folder


def clean_run_folder(out: Path) -> None:
    """A run folder holds one run: stale results never pass for this run's."""
    import shutil

    for name in (RUN_FILE, REPORT_FILE):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / ADAPTER_DIR, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except Exception:  # psutil missing or the process gone: the process group covers it
        return []


def marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries `MEDBOARD_FL_RUN=<marker>`: this run's, and only them.

    Ray's workers outlive the simulation process that started them and are re-parented, so the
    process tree alone misses them; the marker, set for the SuperLink, is inherited by all.
    """
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def stop_process_tree(
    process: subprocess.Popen, grace: float = 10.0, marker: str | None = None
) -> None:
    """SIGTERM the process, its session, its descendants and the marked processes; then SIGKILL."""

    def targets() -> list[int]:
        pids = {process.pid, *_descendants(process.pid)}
        if marker:
            pids.update(marked_processes(marker))
        return sorted(p for p in pids if _alive(p))

    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = targets()
        if not pids:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.time() + grace
        while time.time() < deadline and targets():
            time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_health(
    port: int, process: subprocess.Popen, log: Path, ca_cert: Path | None = None
) -> None:
    """Until the SuperLink answers /health (over TLS, checked against `ca_cert`, when given)."""
    import ssl

    import httpx

    scheme = "https" if ca_cert else "http"
    verify: bool | ssl.SSLContext = ssl.create_default_context(cafile=ca_cert) if ca_cert else True
    deadline = time.time() + STARTUP_SECONDS
    while time.time() < deadline:
        if process.poll() is not None:
            raise MedboardError(f"the SuperLink exited with code {process.returncode}; see {log}")
        try:
            url = f"{scheme}://127.0.0.1:{port}/health"
            if httpx.get(url, timeout=1.0, verify=verify).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise MedboardError(f"the SuperLink did not start within {STARTUP_SECONDS:.0f} s; see {log}")


def _bin_dir() -> Path:
    # Not resolved: a venv's python is a link to the system's, and the venv's bin is wanted.
    return Path(sys.executable).parent


def flower_tool(name: str) -> str:
    found = _bin_dir() / name
    return str(found) if found.exists() else name


def flower_env(flwr_home: Path, marker: str) -> dict[str, str]:
    """The environment of every Flower process medboard starts.

    The interpreter's bin folder comes first on PATH: the SuperLink and the SuperNodes spawn
    `flower-superexec` by name, and a shell without the venv activated would not find it.
    """
    env = dict(os.environ)
    path = env.get("PATH", "")
    env.update(
        {
            "PATH": os.pathsep.join([str(_bin_dir()), *filter(None, path.split(os.pathsep))]),
            "FLWR_HOME": str(flwr_home),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "TOKENIZERS_PARALLELISM": "false",
            MARKER_VAR: marker,
        }
    )
    return env


def superlink_command(port: int, *options: str) -> list[str]:
    """flower-superlink on 127.0.0.1:`port` (Fleet, Control and Runtime APIs: one port in 1.41),
    the ServerApp in a subprocess, no runtime dependency installation; `options` add the rest."""
    return [
        flower_tool("flower-superlink"),
        *options,
        "--isolation",
        "subprocess",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def start_process(
    command: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen:
    """A Flower process in its own session, its output in `log`; the caller stops it."""
    with log.open("w", encoding="utf-8") as handle:
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stream_flwr_run(
    app: Path,
    run_config: dict[str, Value],
    env: dict[str, str],
    folder: Path,
    started: float,
    timeout: float,
    echo: Callable[[str], None] | None = None,
    options: tuple[str, ...] = (),
) -> None:
    """`flwr run APP medboard --run-config ... --stream` against the run's SuperLink; its log in
    `folder/flwr.log`; raise on failure or past `timeout`. `options` add flwr run's others."""
    command = [flower_tool("flwr"), "run", str(app), CONNECTION]
    command += ["--run-config", format_overrides(run_config), *options, "--stream"]
    flwr_log = folder / "flwr.log"
    with flwr_log.open("w", encoding="utf-8") as handle:
        runner = subprocess.Popen(
            command,
            env=env,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        ended = threading.Event()
        watcher = threading.Thread(target=_end_after_server, args=(folder, runner, ended))
        watcher.daemon = True
        watcher.start()
        try:
            assert runner.stdout is not None
            for line in runner.stdout:
                handle.write(line)
                handle.flush()
                if echo is not None:
                    echo(line.rstrip("\n"))
                if time.time() - started > timeout:
                    raise MedboardError(f"the run took longer than {timeout:.0f} s")
            runner.wait()
        finally:
            stop_process_tree(runner, grace=5.0)
    if runner.returncode != 0 and not ended.is_set():
        raise MedboardError(f"flwr run failed (exit {runner.returncode}); see {flwr_log}")


def _end_after_server(folder: Path, runner: subprocess.Popen, ended: threading.Event) -> None:
    """Stop `flwr run --stream` once the ServerApp has written its final run.json.

    After a ServerApp that failed, `flwr run --stream` goes on streaming for about 40 s (until
    the SuperLink marks the run finished); the outcome is in run.json already.
    """
    import json

    path = folder / RUN_FILE
    while runner.poll() is None:
        try:
            status = json.loads(path.read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError):
            status = None
        if status in ("finished", "failed"):
            deadline = time.time() + SERVER_END_GRACE
            while runner.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            if runner.poll() is None:
                ended.set()
                stop_process_tree(runner, grace=5.0)
            return
        time.sleep(0.5)


def write_connection(flwr_home: Path, address: str, root_certificates: Path | None) -> None:
    """FLWR_HOME/config.toml with one SuperLink connection, the default."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    security = (
        f'root-certificates = "{root_certificates}"\n' if root_certificates else "insecure = true\n"
    )
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{address}"\n{security}',
        encoding="utf-8",
    )


def run_app(
    app: Path,
    overrides: dict[str, Value],
    reference: Path,
    out: Path | None = None,
    timeout: float = 6 * 3600,
    echo: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run the app on the simulation engine; raise MedboardError with the run's one-line reason."""
    app = app.resolve()
    cfg, final, folder = prepare_run(app, overrides, reference, out)
    folder.mkdir(parents=True, exist_ok=True)
    clean_run_folder(folder)
    flwr_home = folder / ".flwr"
    http_port = free_port()
    write_connection(flwr_home, f"127.0.0.1:{http_port}", None)
    marker = uuid.uuid4().hex
    env = flower_env(flwr_home, marker)
    superlink_log = folder / "superlink.log"
    command = superlink_command(http_port, "--insecure", "--simulation")
    started = time.time()
    superlink = start_process(command, env, folder, superlink_log)
    try:  # the SuperLink is stopped below, with its descendants
        wait_health(http_port, superlink, superlink_log)
        federation = simulation_settings(app, cfg.static.num_clients)
        options = ("--federation-config", format_overrides(federation))
        stream_flwr_run(app, final, env, folder, started, timeout, echo, options)
    finally:
        stop_process_tree(superlink, marker=marker)
    return RunOutcome(folder, run_outcome(folder), round(time.time() - started, 2))


def run_outcome(folder: Path) -> dict[str, Any]:
    import json

    path = folder / RUN_FILE
    if not path.is_file():
        raise MedboardError(f"the run wrote no {RUN_FILE} in {folder}; see {folder / 'flwr.log'}")
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("status") != "finished":
        raise MedboardError(state.get("reason") or f"the run did not finish; see {folder}")
    return state
