"""The parts of the deployment engine that need no Flower process: certificates, node keys, site
files, the one line naming a failed site, the device option, the PATH of Flower's processes."""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from medboard.errors import MedboardError
from medboard.federated.comm import site_failures
from medboard.federated.config import ConfigError, FlConfig, app_run_config
from medboard.federated.data import read_site_file
from medboard.federated.deploy import _log_reason, site_files
from medboard.federated.launch import flower_env
from medboard.federated.pki import make_ca, make_node_keys, make_tls
from tests.federated.helpers import REFERENCE_APP


def test_the_server_certificate_is_signed_by_the_run_ca_for_loopback(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    tls = make_tls(tmp_path)
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    other = x509.load_pem_x509_certificate(make_ca(tmp_path / "o", "other").ca_cert.read_bytes())
    with pytest.raises(ValueError):
        server.verify_directly_issued_by(other)
    assert oct(tls.server_key.stat().st_mode & 0o777) == "0o600"
    private, public = make_node_keys(tmp_path, "site-0")
    from cryptography.hazmat.primitives.serialization import (
        load_ssh_private_key,
        load_ssh_public_key,
    )

    key = load_ssh_private_key(private.read_bytes(), None)  # as flower-supernode reads it
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert isinstance(load_ssh_public_key(public.read_bytes()), ec.EllipticCurvePublicKey)


def test_site_files_are_checked_and_named(tmp_path: Path) -> None:
    pair = {"instruction": "Question: Q?\nAnswer:", "response": " A"}
    (tmp_path / "site-0.jsonl").write_text(json.dumps(pair) + "\n\n" + json.dumps(pair) + "\n")
    assert read_site_file(tmp_path / "site-0.jsonl") == [pair, pair]
    with pytest.raises(MedboardError, match=r"^site 1: missing dataset: the site's data file"):
        site_files(tmp_path, 2)
    (tmp_path / "site-1.jsonl").write_text("not json\n")
    with pytest.raises(MedboardError, match=r"site-1.jsonl:1 is not an instruction pair"):
        site_files(tmp_path, 2)
    (tmp_path / "site-1.jsonl").write_text(json.dumps({"instruction": 1, "response": "x"}))
    with pytest.raises(MedboardError, match="instruction and response must be text"):
        site_files(tmp_path, 2)
    (tmp_path / "site-1.jsonl").write_text("\n")
    with pytest.raises(MedboardError, match="holds no instruction pairs"):
        site_files(tmp_path, 2)


def _reply(node: int, code: int | None = None, reason: str = "", to: str = "") -> Any:
    error = SimpleNamespace(code=code, reason=reason) if code is not None else None
    return SimpleNamespace(
        has_error=lambda: error is not None,
        error=error,
        metadata=SimpleNamespace(src_node_id=node, reply_to_message_id=to),
    )


def _sent(*nodes: int) -> list[Any]:
    return [
        SimpleNamespace(metadata=SimpleNamespace(dst_node_id=n, message_id=f"m{n}")) for n in nodes
    ]


def test_a_failed_or_silent_site_is_named_by_its_site_id() -> None:
    sites = {111: 0, 222: 1, 333: 2}
    ok = [_reply(111), _reply(333)]
    assert site_failures(2, "train", _sent(111, 333), ok, sites) == ""
    # The SuperLink answers for a dead node, from its own node id (1), replying to its message.
    dead = _reply(1, 5, "Error:\n late", to="m222")
    line = site_failures(2, "train", _sent(111, 222, 333), [*ok, dead], sites)
    assert line == (
        "round 2 train: site 1 failed: the SuperLink declared the site unavailable (no "
        "heartbeat) (code 5: Error: late); run stopped"
    )
    unknown_id = _reply(1, 5, "late", to="?")  # matched to the one site that sent nothing
    line = site_failures(2, "train", _sent(111, 222, 333), [*ok, unknown_id], sites)
    assert line.startswith("round 2 train: site 1 failed: the SuperLink declared")
    own = _reply(222, 2, "ModelError: no CUDA")  # the site's ClientApp raised
    line = site_failures(1, "train", _sent(111, 222, 333), [*ok, own], sites)
    assert "site 1 failed: its ClientApp raised an exception (code 2: ModelError: no CUDA)" in line
    silent = site_failures(1, "evaluate", _sent(111, 222, 333), ok, sites)
    assert "site 1 sent no reply before the round's timeout" in silent


def test_device_is_optional_and_checked() -> None:
    config = app_run_config(REFERENCE_APP)
    assert config["device"] == "cpu" and FlConfig.from_run_config(config).device == "cpu"
    older = {k: v for k, v in config.items() if k != "device"}
    assert FlConfig.from_run_config(older).device == "cpu"
    assert FlConfig.from_run_config({**config, "device": "cuda:1"}).device == "cuda:1"
    with pytest.raises(ConfigError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        FlConfig.from_run_config({**config, "device": "tpu"})


def test_cuda_without_a_gpu_is_one_line() -> None:
    torch = pytest.importorskip("torch")
    from medboard.federated.client_app import resolve_device

    assert resolve_device("cpu") == "cpu"
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(MedboardError, match="asks for device 'cuda' but this site has no CUDA"):
        resolve_device("cuda")


def test_flower_processes_get_the_interpreters_bin_first(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = flower_env(tmp_path / ".flwr", "marker")
    first = env["PATH"].split(os.pathsep)[0]
    assert first == str(Path(sys.executable).parent)
    assert env["PATH"].endswith("/usr/bin:/bin")
    assert (Path(first) / "flower-superexec").exists()
    assert env["FLWR_HOME"] == str(tmp_path / ".flwr") and env["MEDBOARD_FL_RUN"] == "marker"


# A SuperNode's log as Flower 1.41 wrote it when the SuperLink refused to activate it.
REFUSED_LOG = """\x1b[92mINFO \x1b[0m:      Starting Flower SuperNode
INFO:     Started server process [13801]
\x1b[91mERROR \x1b[0m:     Exit Code: 305
Failed to initialize the connection to the SuperLink.
[code: 2004] Failed to activate SuperNode.

INFO:     Shutting down
INFO:     Finished server process [13801]
"""


def test_a_failed_process_is_named_by_its_error_entry_not_its_last_line(tmp_path: Path) -> None:
    log = tmp_path / "supernode-1.log"
    log.write_text(REFUSED_LOG)
    assert _log_reason(log) == (
        "ERROR : Exit Code: 305 Failed to initialize the connection to the SuperLink. "
        "[code: 2004] Failed to activate SuperNode."
    )
    log.write_text("INFO: starting\nTraceback: something broke\n")
    assert _log_reason(log) == "Traceback: something broke"  # no ERROR entry: the last line
    log.write_text("")
    assert _log_reason(log) == "(empty log)"
    assert _log_reason(tmp_path / "never-written.log") == "(empty log)"
