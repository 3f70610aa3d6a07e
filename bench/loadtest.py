"""Load test of the leaderboard on loopback: the board, model pages and searches under wrk.

Wipes the database at --db (PostgreSQL; default $MEDBOARD_LOAD_DB, else the local medboard_load
database), migrates it through the real schema (`open_database`) and seeds --models entries on
the open_medical track (default 1,000 models x 11 tasks: the track's 9 tasks plus careqa_en and
headqa_en; realistic names, sizes, precisions, model types, origins and dates; a few partial
entries). Then starts a real server (`medboard serve --workers 0`: no in-process queue worker,
no published table loaded), waits until it answers, and runs wrk against each endpoint
(`/leaderboard/open_medical` and `/api/leaderboard/open_medical` by default; `--set model` and
`--set search` add a model page and a search, each as a page and its JSON twin, then many model
pages or searches in turn: see loadtest_views.py; `--endpoint PATH` loads any path) with
--connections connections on --threads threads for --duration seconds, after a short warm-up.
Reports requests/s and the p50/p90/p99 latency wrk measured (`--latency`), with the machine's
load average before and after, and optionally writes everything as JSON (--out). The server is
stopped at the end, whatever happens.

    python bench/loadtest.py --duration 30 --out loadtest.json
    python bench/loadtest.py --duration 10 --set board --set model --set search

The target (docs/lab-notes/loadtest.md): p99 under 100 ms with 50 concurrent clients on a 2-core
machine.
Exit status 1 when an endpoint misses --target-p99-ms or answered with errors, or the server logged
a traceback. `--mixed` adds a third run: 94 views (each sort column, pages 1-3, filters; HTML and
JSON) asked for in turn, after each was asked for once (the time of a first render is reported);
the model pages and searches sent in turn are warmed and reported the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from loadtest_views import (
    SETS,
    board_entry_ids,
    mixed_paths,
    rotation_paths,
    rotation_script,
    single_paths,
)

DEFAULT_DB = "postgresql+psycopg://medboard:medboard@localhost/medboard_load"
TRACK = "open_medical"
# Every task the seeded entries have a score for, with the size of its test split (for the
# standard errors). The open_medical board ranks the first nine.
TASK_SIZES = {
    "medqa_4options": 1273,
    "medmcqa": 4183,
    "pubmedqa": 500,
    "mmlu_anatomy": 135,
    "mmlu_clinical_knowledge": 265,
    "mmlu_college_biology": 144,
    "mmlu_college_medicine": 173,
    "mmlu_medical_genetics": 100,
    "mmlu_professional_medicine": 272,
    "careqa_en": 5621,
    "headqa_en": 2742,
}
TASK_OFFSETS = {  # logit offsets: some tasks are harder than others
    "medqa_4options": -0.3,
    "medmcqa": -0.4,
    "pubmedqa": 0.5,
    "mmlu_anatomy": 0.1,
    "mmlu_clinical_knowledge": 0.3,
    "mmlu_college_biology": 0.6,
    "mmlu_college_medicine": 0.1,
    "mmlu_medical_genetics": 0.4,
    "mmlu_professional_medicine": 0.2,
    "careqa_en": 0.0,
    "headqa_en": 0.2,
}
FAMILIES = [  # organisation, family, sizes in billions, instruct suffix
    ("meta-llama", "Llama-3.1", [8, 70], "-Instruct"),
    ("meta-llama", "Llama-3.2", [1, 3], "-Instruct"),
    ("meta-llama", "Llama-2", [7, 13, 70], "-chat-hf"),
    ("mistralai", "Mistral", [7], "-Instruct-v0.3"),
    ("mistralai", "Mixtral-8x7B", [47], "-Instruct-v0.1"),
    ("Qwen", "Qwen2.5", [0.5, 1.5, 3, 7, 14, 32, 72], "-Instruct"),
    ("Qwen", "Qwen3", [0.6, 1.7, 4, 8, 14, 32], ""),
    ("google", "gemma-2", [2, 9, 27], "-it"),
    ("google", "gemma-3", [1, 4, 12, 27], "-it"),
    ("microsoft", "Phi-3-mini", [3.8], "-4k-instruct"),
    ("microsoft", "Phi-4", [14], ""),
    ("HuggingFaceTB", "SmolLM2", [0.135, 0.36, 1.7], "-Instruct"),
    ("allenai", "OLMo-2", [7, 13], "-Instruct"),
    ("tiiuae", "Falcon3", [1, 3, 7, 10], "-Instruct"),
    ("01-ai", "Yi-1.5", [6, 9, 34], "-Chat"),
    ("internlm", "internlm2_5", [7, 20], "-chat"),
]
MEDICAL_TEAMS = [
    "epfl-llm", "BioMistral", "aaditya", "johnsnowlabs", "medalpaca", "FreedomIntelligence",
    "UCSC-VLAA", "m42-health", "ProbeMedicalYonseiMAILab", "stanford-crfm", "HPAI-BSC",
    "ContactDoctor", "OpenMeditron", "instadeepai", "mlabonne", "NousResearch", "Henrychur",
    "AdaptLLM", "wanglab", "TsinghuaC3I",
]  # fmt: skip
MEDICAL_SUFFIXES = [
    "Med", "Medical", "Clinical", "Bio", "PubMed", "MedQA-SFT", "Meditron", "Doctor",
    "Aloe", "UltraMedical", "MedAlign", "Health",
]  # fmt: skip
DTYPES = ["bfloat16"] * 6 + ["float16"] * 3 + ["float32", ""]
LICENSES = ["apache-2.0", "llama3.1", "mit", "gemma", "cc-by-nc-4.0", "other"]


# --- seeding ---------------------------------------------------------------------------------


def _hex(rng: random.Random, digits: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(digits))


def _size_text(billions: float) -> str:
    return f"{billions * 1000:g}M" if billions < 1 else f"{billions:g}B"


def synthetic_models(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` distinct models with their entry and 11 task scores (plain dictionaries)."""
    rng = random.Random(seed)
    start = date(2023, 3, 1)
    models: list[dict[str, Any]] = []
    names: set[str] = set()
    while len(models) < count:
        org, family, sizes, suffix = rng.choice(FAMILIES)
        billions = rng.choice(sizes)
        base = f"{org}/{family}-{_size_text(billions)}"
        kind = rng.choices(["pretrained", "instruct", "fine-tuned", "unknown"], [2, 3, 6, 1])[0]
        team = None
        if kind == "pretrained":
            name = base
        elif kind == "instruct":
            name = base + suffix
        else:
            team = rng.choice(MEDICAL_TEAMS)
            medical = rng.choice(MEDICAL_SUFFIXES)
            version = f"-v{rng.randint(0, 3)}.{rng.randint(0, 9)}" if rng.random() < 0.7 else ""
            name = f"{team}/{family}-{_size_text(billions)}-{medical}{version}"
        if name in names:
            name = f"{name}-{_hex(rng, 6)}"
        if name in names:
            continue
        names.add(name)
        parameters = int(billions * 1e9 * rng.uniform(0.97, 1.08))
        ability = -1.2 + 0.45 * math.log10(parameters / 1e8) + rng.gauss(0, 0.35)
        ability += {"fine-tuned": 0.25, "instruct": 0.1}.get(kind, 0.0)
        tasks = list(TASK_SIZES)
        if rng.random() < 0.03:  # a partial entry: a task or two were never run
            for task in rng.sample(tasks[:9], rng.randint(1, 2)):
                tasks.remove(task)
        scores = []
        for task in tasks:
            logit = ability + TASK_OFFSETS[task] + rng.gauss(0, 0.2)
            value = min(0.99, max(0.2, 1 / (1 + math.exp(-logit))))
            n = TASK_SIZES[task]
            stderr = math.sqrt(value * (1 - value) / n)
            scores.append({"task": task, "value": round(value, 4), "stderr": stderr, "n": n})
        origin = rng.choices(["published", "imported", "evaluated"], [16, 3, 1])[0]
        day = start + timedelta(days=rng.randint(0, 1000))
        models.append(
            {
                "model": {
                    "name": name,
                    "revision": _hex(rng, 40),
                    "dtype": rng.choice(DTYPES),
                    "adapter": None,
                    "adapter_hash": "",
                    "parameters": parameters,
                    "license": rng.choice(LICENSES),
                    "model_type": kind,
                    "base_model": base if kind == "fine-tuned" else None,
                },
                "entry": {
                    "track": TRACK,
                    "origin": origin,
                    "source": {
                        "published": "published/open_medical_leaderboard.csv",
                        "imported": f"lm-eval/{name.replace('/', '__')}/results.json",
                        "evaluated": f"runs/{_hex(rng, 16)}",
                    }[origin],
                    "source_hash": hashlib.sha256(name.encode()).hexdigest(),
                    "team": team,
                    "date": day.isoformat(),
                    "hidden": False,
                    "extra": {},
                },
                "scores": scores,
            }
        )
    return models


def wipe(database: Any) -> None:
    """Every row of every table of the schema (the migration history stays)."""
    from sqlalchemy import text

    from medboard.results.db import Base

    tables = [t.name for t in Base.metadata.sorted_tables]
    with database.engine.begin() as connection:
        if database.engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                connection.execute(text(f"DELETE FROM {table}"))


def seed(url: str, count: int, seed_value: int = 0) -> dict[str, Any]:
    """Wipe the database at `url` and fill it with `count` models, one entry each."""
    from sqlalchemy import func, insert, select

    from medboard.results.db import Entry, Model, TaskScore, open_database

    started = time.perf_counter()
    database = open_database(url)  # creates or upgrades the schema
    wipe(database)
    rows = synthetic_models(count, seed_value)
    with database.session() as session:
        model_ids = session.scalars(
            insert(Model).returning(Model.id, sort_by_parameter_order=True),
            [r["model"] for r in rows],
        ).all()
        entry_ids = session.scalars(
            insert(Entry).returning(Entry.id, sort_by_parameter_order=True),
            [{**r["entry"], "model_id": m} for r, m in zip(rows, model_ids, strict=True)],
        ).all()
        score_rows = [
            {**s, "entry_id": e, "metric": "acc"}
            for r, e in zip(rows, entry_ids, strict=True)
            for s in r["scores"]
        ]
        session.execute(insert(TaskScore), score_rows)
    with database.session() as session:
        counted = {
            "models": session.scalar(select(func.count(Model.id))),
            "entries": session.scalar(select(func.count(Entry.id))),
            "task_scores": session.scalar(select(func.count(TaskScore.id))),
        }
    database.engine.dispose()
    return {**counted, "seconds": round(time.perf_counter() - started, 2)}


# --- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server stopped with status {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/api/leaderboard/open_medical", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s")


def start_server(
    url: str, port: int, log: Path, home: Path, extra: list[str]
) -> subprocess.Popen[bytes]:
    medboard = shutil.which("medboard")
    command = [medboard] if medboard else [sys.executable, "-m", "medboard.cli"]
    command += ["serve", "--db", url, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "0", *extra]
    env = {
        **os.environ,
        "MEDBOARD_HOME": str(home),
        "MEDBOARD_BENCHMARKS": str(home / "no-benchmarks"),  # no published table loaded
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


# --- wrk -------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    found = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if not found:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """requests/s, latency percentiles (ms) and errors from wrk's --latency report."""
    result: dict[str, Any] = {}
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.M)
    if not rps:
        raise ValueError("no Requests/sec in wrk's output:\n" + output)
    result["requests_per_s"] = float(rps.group(1))
    for percent, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.M):
        result[f"p{percent}_ms"] = round(_ms(value), 3)
    latency = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    if latency:
        result["mean_ms"] = round(_ms(latency.group(1)), 3)
        result["max_ms"] = round(_ms(latency.group(3)), 3)
    total = re.search(r"^\s+(\d+) requests in ([0-9.]+\w+), ([0-9.]+\w+) read", output, re.M)
    if total:
        result["requests"] = int(total.group(1))
        result["read"] = total.group(3)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    result["socket_errors"] = sum(int(x) for x in sockets.groups()) if sockets else 0
    return result


def run_wrk(
    wrk: str,
    url: str,
    connections: int,
    threads: int,
    duration: float,
    script: Path | None = None,
) -> tuple[str, dict[str, Any]]:
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    command += ["--timeout", "10s", *(["-s", str(script)] if script else []), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout, parse_wrk(done.stdout)


def warm(base: str, paths: list[str]) -> dict[str, float]:
    """Ask for each path once, in turn: the time of a view not rendered yet (ms)."""
    times = []
    for path in paths:
        started = time.perf_counter()
        response_size(base + path)
        times.append(1000 * (time.perf_counter() - started))
    times.sort()
    return {
        "median": round(times[len(times) // 2], 1),
        "max": round(times[-1], 1),
        "views": len(times),
    }


def response_size(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


# --- report ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        cpu = found.group(1).strip() if found else ""
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "system": platform.platform(),
        "python": platform.python_version(),
    }


def table(results: list[dict[str, Any]]) -> str:
    header = f"{'endpoint':<44} {'req/s':>9} " + " ".join(
        f"{name:>8}" for name in ("p50 ms", "p90 ms", "p99 ms", "errors")
    )
    lines = [header, "-" * len(header)]
    for r in results:
        errors = r["non_2xx"] + r["socket_errors"]
        lines.append(
            f"{r['endpoint']:<44} {r['requests_per_s']:>9.1f} {r.get('p50_ms', math.nan):>8.2f} "
            f"{r.get('p90_ms', math.nan):>8.2f} {r.get('p99_ms', math.nan):>8.2f} {errors:>8}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=os.environ.get("MEDBOARD_LOAD_DB") or DEFAULT_DB)
    parser.add_argument("--models", type=int, default=1000, help="entries to seed")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic data")
    parser.add_argument("--no-seed", action="store_true", help="use the database as it is")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per endpoint")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per endpoint")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--endpoint", action="append", help="path to load (repeatable)")
    parser.add_argument(
        "--set",
        action="append",
        choices=SETS,
        dest="sets",
        help="endpoints to load (repeatable; default: board): board, model pages, searches",
    )
    parser.add_argument(
        "--mixed", action="store_true", help="also load many views in turn (sorts, pages, filters)"
    )
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--target-p99-ms", type=float, default=100.0)
    parser.add_argument(
        "--server-option", action="append", help="extra option of medboard serve (repeatable)"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sets = args.sets or ([] if args.endpoint else ["board"])
    report: dict[str, Any] = {
        "database": re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", args.db),
        "machine": machine(),
        "wrk": {"connections": args.connections, "threads": args.threads},
        "duration_s": args.duration,
    }
    if not args.no_seed:
        print(f"seeding {args.models} models on {report['database']} ...", flush=True)
        report["seeded"] = seed(args.db, args.models, args.seed)
        print(f"seeded: {report['seeded']}", flush=True)
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="medboard-load-") as folder:
        tmp = Path(folder)
        log = tmp / "server.log"
        process = start_server(args.db, port, log, tmp, args.server_option or [])
        try:
            wait_ready(base, process)
            print(f"server ready at {base} (pid {process.pid})", flush=True)
            ids = board_entry_ids(base) if "model" in sets else []
            endpoints = list(args.endpoint or [])
            endpoints += [p for name in sets for p in single_paths(name, ids)]
            runs: list[tuple[str, str, Path | None]] = [(e, base + e, None) for e in endpoints]
            report["first_render_ms"] = {}
            for name in sets:
                paths = rotation_paths(name, ids)
                if paths:
                    script = rotation_script(paths, tmp, name)
                    runs.append((f"{name}: {len(paths)} views in turn", base + "/", script))
                    report["first_render_ms"][name] = warm(base, paths)
            if args.mixed:
                paths = mixed_paths()
                script = rotation_script(paths, tmp, "mixed")
                runs.append((f"mixed: {len(paths)} views", base + "/", script))
                report["mixed_first_render_ms"] = warm(base, paths)
            for name, found in report["first_render_ms"].items():
                print(f"{name}: first answer of each view (ms): {found}", flush=True)
            for name, url, script in runs:
                size = response_size(url) if script is None else None
                if args.warmup > 0:
                    run_wrk(args.wrk, url, args.connections, args.threads, args.warmup, script)
                load_before = os.getloadavg()
                output, parsed = run_wrk(
                    args.wrk, url, args.connections, args.threads, args.duration, script
                )
                parsed.update(
                    endpoint=name,
                    response_bytes=size,
                    loadavg_before=[round(x, 2) for x in load_before],
                    loadavg_after=[round(x, 2) for x in os.getloadavg()],
                    wrk_output=output,
                )
                results.append(parsed)
                print(output, flush=True)
        except BaseException:
            stop_server(process)
            sys.stdout.write(log.read_text(errors="replace")[-4000:])
            raise
        stop_server(process)
        server_log = log.read_text(errors="replace")
    report["server_tracebacks"] = server_log.count("Traceback")
    report["results"] = results
    print(table(results))
    for r in results:
        print(f"{r['endpoint']}: load average {r['loadavg_before']} -> {r['loadavg_after']}")
    if report["server_tracebacks"]:
        print(f"the server logged {report['server_tracebacks']} traceback(s):")
        print(server_log[-4000:])
    failed = [
        r["endpoint"]
        for r in results
        if r.get("p99_ms", math.inf) >= args.target_p99_ms or r["non_2xx"] or r["socket_errors"]
    ] + (["server tracebacks"] if report["server_tracebacks"] else [])
    report["target_p99_ms"] = args.target_p99_ms
    report["passed"] = not failed
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if failed:
        print(f"missed the target (p99 < {args.target_p99_ms:g} ms, no errors): {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
