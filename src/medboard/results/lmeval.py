"""lm-evaluation-harness output folders: read them (import-results) and write them (export).

An lm-eval run with `--output_path DIR --log_samples` leaves `results_<stamp>.json` and one
`samples_<task>_<stamp>.jsonl` per task. Tasks are matched to medboard's by name (`ref_<task>`,
the configs of bench/lmeval_tasks.py, counts as `<task>`); other tasks are skipped and listed.
Samples become medboard's per-sample records: id, choices, log-likelihoods, prediction, gold.
"""

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medboard.errors import DataError
from medboard.results.schema import json_safe
from medboard.scoring.choice import argmax

_RESULTS = re.compile(r"^results_(?P<stamp>\d{4}-\d\d-\d\dT[\d\-.]+)\.json$")


@dataclass
class TaskOutput:
    task: str  # medboard's name
    lmeval_task: str
    scores: dict[str, tuple[float, float | None]]  # metric -> (value, stderr)
    n: int
    version: str
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LmEvalOutput:
    results_file: Path
    results_hash: str
    model: str
    dtype: str
    lm_eval_version: str
    date: str  # YYYY-MM-DD
    config: dict[str, Any]
    tasks: list[TaskOutput]
    skipped: list[str]


def _medboard_task(name: str, known: set[str]) -> str | None:
    bare = name.removeprefix("ref_")
    return bare if bare in known else None


def _model_args(config: dict[str, Any]) -> dict[str, str]:
    args = config.get("model_args") or {}
    if isinstance(args, str):
        pairs = (part.split("=", 1) for part in args.split(",") if "=" in part)
        return {k.strip(): v.strip() for k, v in pairs}
    return {str(k): str(v) for k, v in args.items()}


def sample_record(row: dict[str, Any], where: str) -> dict[str, Any]:
    """medboard's per-sample record from one line of lm-eval's --log_samples output."""
    try:
        logprobs = [float(r[0]) for r in row["filtered_resps"]]
        greedy = [bool(r[1]) for r in row["filtered_resps"]]
    except (KeyError, TypeError, ValueError, IndexError):
        raise DataError(f"{where}: not a log-likelihood sample (no filtered_resps)") from None
    doc = row.get("doc") or {}
    arguments = row.get("arguments") or {}
    continuations = [
        arguments[k].get("arg_1", "")
        for k in sorted(arguments, key=lambda k: int(str(k).rsplit("_", 1)[-1]))
    ]
    choices = [c[1:] if c.startswith(" ") else c for c in continuations]
    if len(choices) != len(logprobs):
        choices = [str(c) for c in doc.get("choices", [])] or [str(i) for i in range(len(logprobs))]
    target = row.get("target")
    gold = int(target) if str(target).strip().isdigit() else None
    if gold is None and target in choices:
        gold = choices.index(target)
    record = {
        "id": str(doc.get("id", f"doc_id:{row.get('doc_id')}")),
        "choices": choices,
        "logprobs": logprobs,
        "greedy": greedy,
        "pred": argmax(logprobs),
        "gold": gold,
    }
    for metric in ("acc", "acc_norm"):
        if metric in row:
            record[metric] = float(row[metric])
    if doc.get("subject"):
        record["subject"] = doc["subject"]
    return record


def results_folders(path: Path) -> list[Path]:
    """What `path` holds to import, one item per model: a results file itself, else each folder
    under it with results_<date>.json files (lm-eval writes one folder per model under its
    --output_path; `medboard export` of several entries writes several)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path} does not exist")
    found = {p.parent for p in path.rglob("results_*.json") if _RESULTS.match(p.name)}
    if not found:
        raise DataError(f"no lm-eval results_<date>.json under {path}")
    return sorted(found)


def _results_file(path: Path) -> Path:
    if path.is_file():
        if not _RESULTS.match(path.name):
            raise DataError(f"{path} is not an lm-eval results_<date>.json file")
        return path
    if not path.is_dir():
        raise DataError(f"{path} does not exist")
    found = sorted(p for p in path.rglob("results_*.json") if _RESULTS.match(p.name))
    if not found:
        raise DataError(f"no lm-eval results_<date>.json under {path}")
    return max(found, key=lambda p: _RESULTS.match(p.name)["stamp"])  # the newest run


def read_lmeval(path: Path, known_tasks: set[str]) -> LmEvalOutput:
    """One lm-eval run: its results file and, when logged, its samples."""
    results_file = _results_file(path)
    raw = results_file.read_bytes()
    try:
        summary = json.loads(raw)
        results = summary["results"]
    except (ValueError, KeyError):
        raise DataError(f"{results_file} is not an lm-eval results file") from None
    stamp = _RESULTS.match(results_file.name)["stamp"]
    config = summary.get("config") or {}
    args = _model_args(config)
    tasks, skipped = [], []
    for name, entry in sorted(results.items()):
        task = _medboard_task(name, known_tasks)
        if task is None:
            skipped.append(name)
            continue
        scores = {}
        for metric in ("acc", "acc_norm"):
            if f"{metric},none" in entry:
                stderr = entry.get(f"{metric}_stderr,none")
                stderr = float(stderr) if isinstance(stderr, int | float) else None
                scores[metric] = (float(entry[f"{metric},none"]), stderr)
        if "acc" not in scores:
            skipped.append(name)
            continue
        n_samples = summary.get("n-samples", {}).get(name, {}).get("effective")
        output = TaskOutput(
            task=task,
            lmeval_task=name,
            scores=scores,
            n=int(n_samples or entry.get("sample_len") or 0),
            version=str(summary.get("versions", {}).get(name, "")),
        )
        samples_file = results_file.parent / f"samples_{name}_{stamp}.jsonl"
        if samples_file.exists():
            lines = samples_file.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise DataError(f"{samples_file.name} line {number}: not JSON") from None
                output.samples.append(sample_record(row, f"{samples_file.name} line {number}"))
            output.n = output.n or len(output.samples)
        tasks.append(output)
    if not tasks:
        raise DataError(
            f"{results_file.name} has no task medboard knows (found: {', '.join(skipped)})"
        )
    date = summary.get("date")
    day = time.strftime("%Y-%m-%d", time.gmtime(float(date))) if date else stamp[:10]
    return LmEvalOutput(
        results_file=results_file,
        results_hash=hashlib.sha256(raw).hexdigest(),
        model=args.get("pretrained") or str(summary.get("model_name") or "unknown"),
        dtype=args.get("dtype", ""),
        lm_eval_version=str(summary.get("lm_eval_version", "")),
        date=day,
        config=config,
        tasks=tasks,
        skipped=skipped,
    )


def write_lmeval(
    folder: Path,
    model: str,
    dtype: str,
    tasks: list[TaskOutput],
    harness_version: str,
) -> Path:
    """Write tasks as an lm-eval output folder (results JSON and samples); returns the results."""
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S.000000", time.gmtime())
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for task in tasks:
        entry: dict[str, Any] = {"alias": task.task}
        for metric, (value, stderr) in task.scores.items():
            entry[f"{metric},none"] = value
            entry[f"{metric}_stderr,none"] = "N/A" if json_safe(stderr) is None else stderr
        results[task.task] = entry
        lines = []
        for doc_id, record in enumerate(task.samples):
            greedy = record.get("greedy") or [False] * len(record["logprobs"])
            pairs = list(zip(record["logprobs"], greedy, strict=True))
            row = {
                "doc_id": doc_id,
                "doc": {"id": record["id"], "choices": record["choices"]},
                "target": record.get("gold"),
                "arguments": {
                    f"gen_args_{i}": {"arg_0": "", "arg_1": " " + choice}
                    for i, choice in enumerate(record["choices"])
                },
                "resps": [[[lp, g]] for lp, g in pairs],
                "filtered_resps": [[lp, g] for lp, g in pairs],
            }
            for metric in ("acc", "acc_norm"):
                if metric in record:
                    row[metric] = record[metric]
            lines.append(json.dumps(row, ensure_ascii=False))
        text = "\n".join(lines) + ("\n" if lines else "")
        (folder / f"samples_{task.task}_{stamp}.jsonl").write_text(text, encoding="utf-8")
    summary = {
        "results": results,
        "versions": {t.task: t.version for t in tasks},
        "n-samples": {t.task: {"original": t.n, "effective": t.n} for t in tasks},
        "config": {"model": "medboard", "model_args": {"pretrained": model, "dtype": dtype}},
        "date": time.time(),
        "medboard_version": harness_version,
        "model_name": model,
    }
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path
