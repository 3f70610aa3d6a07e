"""`medboard fl deploy`: the app on Flower's deployment engine, one SuperNode per site.

What a federation of hospitals runs, on one machine, with every process separate:

1. the run config is checked as for `fl run` (`launch.prepare_run`);
2. each site gets its own data file, `site-N.jsonl` (`--sites DIR`, or the partition simulation
   gives site N, written to `<run>/sites/`); every file is read and checked before anything starts;
3. a CA and the SuperLink's certificate are made for the run (`pki.make_tls`), and one
   authentication key pair per site;
4. the SuperLink starts with TLS and `--enable-supernode-auth`; each site's public key is
   registered with `flwr supernode register`; then the SuperNodes start, each with the CA as
   `--root-certificates`, its private key, and `--node-config "site-id=N data-path=..."`;
5. once every site is connected, `flwr run APP medboard --stream` runs the app to the end.

A SuperNode that exits during the run is reported by site and data file at once; the run then
ends as Flower's semantics make it end: the SuperLink answers the dead site's pending message
with a NODE_UNAVAILABLE error reply once the site has missed its heartbeats (2 x 30 s), and the
ServerApp's strategy wrapper stops the run on that reply (`comm.SiteFailed`). Every process is
stopped when the run ends, fails or is interrupted.
"""

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from medboard.errors import MedboardError
from medboard.federated.config import Value
from medboard.federated.data import (
    SITE_FILE,
    file_sha256,
    partition_spec,
    read_site_file,
    write_site_files,
)
from medboard.federated.launch import (
    CONNECTION,
    RunOutcome,
    clean_run_folder,
    flower_env,
    flower_tool,
    free_port,
    prepare_run,
    run_outcome,
    start_process,
    stop_process_tree,
    stream_flwr_run,
    superlink_command,
    wait_health,
    write_connection,
)
from medboard.federated.pki import make_node_keys, make_tls, public_key_pem
from medboard.paths import atomic_write_text

CONNECT_SECONDS = 120.0
DEPLOYMENT_FILE = "deployment.json"
# What a SuperNode's log says when the SuperLink's certificate is not signed by its root.
UNTRUSTED = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")
# What the SuperLink's log says when a SuperNode's key is not registered with it (the key follows).
UNKNOWN_KEY = "No SuperNode found with the given public key"
# The start of a log entry (Flower's and uvicorn's levels), once colour codes are removed.
ENTRY = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Site:
    """One hospital: its data file, its keys, its SuperNode."""

    id: int
    data: Path
    rows: int
    key: Path
    pub: Path
    root_cert: Path
    log: Path
    node_id: int = 0
    process: subprocess.Popen | None = None
    died: str = ""

    def label(self) -> str:
        return f"site {self.id} ({self.data})"


def site_files(folder: Path, count: int) -> list[tuple[Path, int]]:
    """(file, pairs) of sites 0..count-1 in `folder`; the first problem as one line."""
    found = []
    for site in range(count):
        path = folder / SITE_FILE.format(site)
        try:
            found.append((path, len(read_site_file(path))))
        except MedboardError as exc:
            raise MedboardError(f"site {site}: {exc}") from None
    return found


def _register(site: Site, env: dict[str, str], folder: Path) -> int:
    """`flwr supernode register` of the site's public key; its node id."""
    result = subprocess.run(
        [flower_tool("flwr"), "supernode", "register", str(site.pub), CONNECTION]
        + ["--format", "json"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    start = result.stdout.find("{")
    try:
        answer = json.loads(result.stdout[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        answer = {}
    if result.returncode != 0 or not answer.get("success"):
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        raise MedboardError(
            f"{site.label()}: flwr supernode register failed: {lines[-1] if lines else '?'}"
        )
    return int(answer["node-id"])


def _supernode_command(site: Site, port: int) -> list[str]:
    node_config = f"site-id={site.id} data-path={json.dumps(str(site.data))}"
    return [
        flower_tool("flower-supernode"),
        "--root-certificates",
        str(site.root_cert),
        "--superlink",
        f"127.0.0.1:{port}",
        "--auth-supernode-private-key",
        str(site.key),
        "--node-config",
        node_config,
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
    ]


def _log_reason(log: Path) -> str:
    """What a process's log says went wrong, in one line: its last ERROR entry with the lines
    that belong to it (up to the next entry), else its last line."""
    text = COLOUR.sub("", log.read_text(errors="replace")) if log.is_file() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "(empty log)"
    errors = [i for i, line in enumerate(lines) if line.startswith("ERROR")]
    if not errors:
        return lines[-1][:300]
    end = errors[-1] + 1
    while end < len(lines) and not ENTRY.match(lines[end]):
        end += 1
    return " ".join(" ".join(lines[errors[-1] : end]).split())[:300]


def _key_line(public: Path) -> str:
    """The first base64 line of a public key as the SuperLink logs it (PEM), "" if none."""
    pem = public_key_pem(public).splitlines()
    return pem[1] if len(pem) > 1 else ""


def _check_site(site: Site, superlink_text: str, key_line: str) -> None:
    """Raise the one line that says why a starting SuperNode will not connect, if it won't
    (`superlink_text`: the SuperLink's log; `key_line`: the site's key as it logs it)."""
    text = site.log.read_text(errors="replace") if site.log.is_file() else ""
    if any(marker in text for marker in UNTRUSTED):
        raise MedboardError(
            f"{site.label()}: the SuperNode does not trust the SuperLink's certificate "
            f"(CERTIFICATE_VERIFY_FAILED with --root-certificates {site.root_cert}, not the CA "
            "that signed it); no run was started"
        )
    refused = key_line and any(
        UNKNOWN_KEY in line and key_line in line for line in superlink_text.splitlines()
    )
    if refused:  # whether or not its SuperNode tries again
        raise MedboardError(
            f"{site.label()}: the SuperLink refused the SuperNode's key: {site.pub} is not "
            "registered with it (flwr supernode register); no run was started"
        )
    assert site.process is not None
    if site.process.poll() is None:
        return
    raise MedboardError(
        f"{site.label()}: the SuperNode exited with code {site.process.returncode} before "
        f"connecting: {_log_reason(site.log)}"
    )


def _wait_connected(sites: list[Site], superlink_log: Path) -> None:
    """Until the SuperLink has activated every site's node (its log says so, per node id)."""
    deadline = time.time() + CONNECT_SECONDS
    key_lines = {site.id: _key_line(site.pub) for site in sites}
    while True:
        text = superlink_log.read_text(errors="replace")
        waiting = [s for s in sites if f"Activated node_id={s.node_id}" not in text]
        if not waiting:
            return
        for site in waiting:
            _check_site(site, text, key_lines[site.id])
        if time.time() > deadline:
            raise MedboardError(
                f"{waiting[0].label()} did not connect within {CONNECT_SECONDS:.0f} s; "
                f"see {waiting[0].log}"
            )
        time.sleep(0.5)


@dataclass
class _Watch:
    """Reports a SuperNode that exits while the run goes on (in a thread of its own)."""

    sites: list[Site]
    started: float
    echo: Callable[[str], None] | None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for site in self.sites:
                assert site.process is not None
                if not site.died and site.process.poll() is not None:
                    site.died = (
                        f"{site.label()} died: its SuperNode exited with code "
                        f"{site.process.returncode} {time.time() - self.started:.0f} s into the run"
                    )
                    if self.echo is not None:
                        self.echo(f"medboard: {site.died}")


def _write_deployment(folder: Path, sites: list[Site], port: int, started: float) -> None:
    record = {
        "engine": "deployment",
        "superlink": f"127.0.0.1:{port}",
        "tls": True,
        "supernode_auth": True,
        "sites": [
            {
                "site": s.id,
                "node_id": s.node_id,
                "data": str(s.data),
                "data_sha256": file_sha256(s.data),
                "pairs": s.rows,
                "died": s.died or None,
            }
            for s in sites
        ],
        "wall_seconds": round(time.time() - started, 2),
    }
    atomic_write_text(folder / DEPLOYMENT_FILE, json.dumps(record, indent=2) + "\n")


def _check_site_numbers(
    count: int, site_root_certs: Collection[int], unregistered: Collection[int]
) -> None:
    """Each site the options name is one of the run's."""
    for option, sites in (
        ("--site-root-cert", site_root_certs),
        ("--unregistered-site", unregistered),
    ):
        for site in sorted(sites):
            if not 0 <= site < count:
                raise MedboardError(
                    f"{option} names site {site}, but the run has {count} sites (0 to {count - 1})"
                )


def deploy_app(
    app: Path,
    overrides: dict[str, Value],
    reference: Path,
    out: Path | None = None,
    sites_dir: Path | None = None,
    site_root_certs: dict[int, Path] | None = None,
    unregistered: Collection[int] = (),
    timeout: float = 6 * 3600,
    echo: Callable[[str], None] | None = None,
    on_running: Callable[[list[subprocess.Popen]], None] | None = None,
) -> RunOutcome:
    """Run the app on the deployment engine; raise MedboardError with the run's one-line reason.

    `site_root_certs` gives a site another root certificate than the run's CA (to rehearse a
    misconfigured site); the sites in `unregistered` keep their keys unregistered with the
    SuperLink (to rehearse a site it does not know); `on_running` is called with the SuperNode
    processes, in site order, once `flwr run` has started (tests use it to kill one).
    """
    app = app.resolve()
    cfg, final, folder = prepare_run(app, overrides, reference, out)
    count = cfg.static.num_clients
    _check_site_numbers(count, site_root_certs or {}, unregistered)
    if sites_dir is None:
        sites_dir = folder / "sites"
        data_file = final.get("data-path", "")
        write_site_files(partition_spec(cfg.static, str(data_file)), sites_dir)
    files = site_files(sites_dir.expanduser().resolve(), count)
    folder.mkdir(parents=True, exist_ok=True)
    clean_run_folder(folder)
    tls = make_tls(folder / "tls")
    sites = []
    for number, (path, rows) in enumerate(files):
        key, pub = make_node_keys(folder / "tls", f"site-{number}")
        root = (site_root_certs or {}).get(number, tls.ca_cert)
        log = folder / f"supernode-{number}.log"
        sites.append(Site(number, path, rows, key, pub, Path(root).resolve(), log))
    flwr_home = folder / ".flwr"
    port = free_port()
    write_connection(flwr_home, f"127.0.0.1:{port}", tls.ca_cert)
    marker = uuid.uuid4().hex
    env = flower_env(flwr_home, marker)
    superlink_log = folder / "superlink.log"
    command = superlink_command(
        port,
        *("--ssl-ca-certfile", str(tls.ca_cert), "--ssl-certfile", str(tls.server_cert)),
        *("--ssl-keyfile", str(tls.server_key), "--enable-supernode-auth"),
    )
    started = time.time()
    superlink = start_process(command, env, folder, superlink_log)
    watch = _Watch(sites, started, echo)
    try:  # everything started here is stopped below
        wait_health(port, superlink, superlink_log, tls.ca_cert)
        for site in sites:
            if site.id not in unregistered:
                site.node_id = _register(site, env, folder)
        for site in sites:
            site.process = start_process(_supernode_command(site, port), env, folder, site.log)
        _wait_connected(sites, superlink_log)
        if echo is not None:
            echo(f"medboard: {count} sites connected over TLS, authenticated by their keys")
        threading.Thread(target=watch.run, daemon=True).start()
        if on_running is not None:
            on_running([s.process for s in sites if s.process is not None])
        try:
            stream_flwr_run(app, final, env, folder, started, timeout, echo)
        except MedboardError:
            if not (folder / "run.json").is_file():
                raise
        # run.json has the ServerApp's reason; a dead site is named by its data file too
        dead = [s.died for s in sites if s.died]
        try:
            state = run_outcome(folder)
        except MedboardError as exc:
            raise MedboardError("; ".join([*dead, str(exc)])) from None
    finally:
        watch.stop.set()
        for site in sites:
            if site.process is not None:
                stop_process_tree(site.process, grace=5.0)
        stop_process_tree(superlink, marker=marker)
        _write_deployment(folder, sites, port, started)
    return RunOutcome(folder, state, round(time.time() - started, 2))
