"""Servers started by the tests: a real `medboard serve`; vLLM's OpenAI server (CPU build) and
llama-cpp-python's, each in a venv of its own (.ci/servers.sh installs them and prints
MEDBOARD_TEST_VLLM and MEDBOARD_TEST_LLAMACPP, their Pythons). A test that needs a model server
is skipped without it."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

VLLM = os.environ.get("MEDBOARD_TEST_VLLM")
LLAMACPP = os.environ.get("MEDBOARD_TEST_LLAMACPP")
SERVED_NAME = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], log: Path, wait: float) -> Iterator[str]:
    """A server process on a free port (`{port}` in the command), stopped at the end; yields
    its address (http://127.0.0.1:PORT/v1) once /v1/models answers."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [part.format(port=port) for part in command], env={**os.environ, **env},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + wait
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server stopped: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            if time.time() > deadline:
                pytest.fail(f"the server did not answer in {wait} s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def vllm_server(model_dir: Path, folder: Path) -> contextlib.AbstractContextManager[str]:
    """vLLM serving a transformers folder in float32 as `smollm2`."""
    if not VLLM:
        pytest.skip("MEDBOARD_TEST_VLLM is not set (.ci/servers.sh installs vLLM's CPU build)")
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CACHE_ROOT": str(folder), "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}  # fmt: skip
    command = [VLLM, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", "{port}",
               "--dtype", "float32", "--max-model-len", "2048", "--max-logprobs", "-1",
               "--enforce-eager"]  # fmt: skip
    return server(command, env, folder / "vllm.log", wait=300)


def llamacpp_server(gguf: Path, folder: Path) -> contextlib.AbstractContextManager[str]:
    """llama-cpp-python's server on a GGUF file as `smollm2`."""
    if not LLAMACPP:
        pytest.skip("MEDBOARD_TEST_LLAMACPP is not set (.ci/servers.sh builds llama.cpp's)")
    command = [LLAMACPP, "-m", "llama_cpp.server", "--model", str(gguf),
               "--host", "127.0.0.1", "--port", "{port}", "--model_alias", SERVED_NAME,
               "--n_ctx", "2048", "--n_threads", "2", "--n_threads_batch", "2"]  # fmt: skip
    return server(command, {}, folder / "llamacpp.log", wait=60)


def medboard_serve(home: Path, folder: Path, options: Sequence[str] = ()) -> Iterator[str]:
    """A real `medboard serve` process on folder/board.db with `options`, the medboard home
    `home`, offline, the operator's models folder pytest's base folder (where the tiny model is,
    tmp_path_factory's) and its public servers any on 127.0.0.1 (model servers tests start);
    yields its address once it listens, and stops it at the end (its output
    in folder/serve.log)."""
    port = free_port()
    command = [sys.executable, "-c", "from medboard.cli import main; main()", "serve"]
    command += ["--port", str(port), "--db", f"sqlite:///{folder / 'board.db'}", *options]
    env = {**os.environ, "MEDBOARD_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env["MEDBOARD_MODELS_DIR"] = str(folder.parent)
    env["MEDBOARD_PUBLIC_SERVERS"] = "http://127.0.0.1"  # the model servers the tests start
    log = folder / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the server did not start: " + log.read_text())
    assert process.poll() is None, log.read_text()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
