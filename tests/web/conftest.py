"""A small leaderboard in a temporary SQLite database, and a test client on it.

open_medical: five published entries (one pair tied on the average, one partial) and one
evaluated entry with its runs and samples files; flowertune_medical: three published entries.
"""

import json
import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medboard.leaderboard.published import import_published
from medboard.results.db import Database, open_database
from medboard.results.record import record_entry
from medboard.results.schema import RunResult, RunSpec, Score
from medboard.tasks import REGISTRY
from medboard.web.app import create_app

OPEN_TASKS = [t.name for t in REGISTRY.resolve("open_medical", None)]

# model, type, parameters, dtype, base model, team, then the 9 tasks in percent
PUBLISHED = [
    ("alpha-7b", "instruct", "7000000000", "bfloat16", "", "", [70.0] * 9),
    ("beta-1.5b", "pretrained", "1500000000", "float16", "", "", [60.0] * 9),
    ("Gamma-2b", "instruct", "2000000000", "bfloat16", "", "", [50.0, 70.0] + [60.0] * 7),
    ("delta-8b", "instruct", "8000000000", "bfloat16", "", "Llama lab", [90.0, 90.0] + [""] * 7),
    ("epsilon-med", "fine-tuned", "", "", "Llama-3-8B", "", [40.0] * 9),
]
FLOWERTUNE = (
    "rank,team,base_model,comm_cost_gb,average,pubmedqa,medmcqa,medqa,careqa,date\n"
    "1,ZeroOne.AI,Llama3.1-Aloe-Beta-8B,2.0,63.57,74.80,55.39,59.31,64.79,2026-01-14\n"
    "2,FL-finetune-JB-DC,Bio-Medical-Llama-3-8B,1.6,63.12,70.40,60.93,65.82,55.36,2025-04-12\n"
    "13,Massimo R. Scamarcia,Qwen2.5-7B-Instruct,45.1,49.07,44.60,39.06,55.46,57.16,2024-11-23\n"
)
MEDQA_N = 30
MEDMCQA_SUBJECTS = ["Anatomy", "Pharmacology", "Surgery"]


def published_csv(path: Path) -> Path:
    header = ["model", "model_type", "parameters", "dtype", "base_model", "team", *OPEN_TASKS]
    lines = [",".join(header)]
    for model, kind, params, dtype, base, team, scores in PUBLISHED:
        cells = [model, kind, params, dtype, base, team, *(str(s) for s in scores)]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def medqa_samples() -> list[dict]:
    """30 questions; the model is right on every third one (10 of 30)."""
    records = []
    for i in range(MEDQA_N):
        gold = i % 4
        pred = gold if i % 3 == 0 else (gold + 1) % 4
        logprobs = [-4.0, -4.0, -4.0, -4.0]
        logprobs[pred] = -1.0
        records.append(
            {
                "id": f"medqa-{i}",
                "prompt_hash": f"h{i}",
                "choices": [f"option {c} of question {i}" for c in "ABCD"],
                "logprobs": logprobs,
                "pred": pred,
                "gold": gold,
                "acc": float(pred == gold),
                "acc_norm": float(pred == gold),
            }
        )
    return records


def medmcqa_samples() -> list[dict]:
    """12 questions in 3 subjects: Anatomy 4/4 right, Pharmacology 2/4, Surgery 0/4."""
    records = []
    for i in range(12):
        subject = MEDMCQA_SUBJECTS[i // 4]
        right = {"Anatomy": True, "Pharmacology": i % 2 == 0, "Surgery": False}[subject]
        pred, gold = (1, 1) if right else (0, 1)
        records.append(
            {
                "id": f"mcqa-{i}",
                "choices": ["a", "b", "c", "d"],
                "logprobs": [-0.5, -1.5, -3.0, -3.0] if pred == 0 else [-1.5, -0.5, -3.0, -3.0],
                "pred": pred,
                "gold": gold,
                "acc": float(right),
                "subject": subject,
            }
        )
    return records


def _stderr(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def add_evaluated(database: Database, folder: Path) -> int:
    """An evaluated entry: one run per task, samples files for medqa_4options and medmcqa."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = {"medqa_4options": medqa_samples(), "medmcqa": medmcqa_samples()}
    results = []
    for task in OPEN_TASKS:
        records = samples.get(task)
        samples_file = ""
        if records is not None:
            path = folder / f"samples_{task}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            samples_file = str(path)
            accs = [r["acc"] for r in records]
            scores = {"acc": Score(value=sum(accs) / len(accs), stderr=_stderr(accs))}
            n = len(records)
        else:
            scores = {
                "acc": Score(value=0.55, stderr=0.02),
                "acc_norm": Score(value=0.5, stderr=0.02),
            }
            n = 100
        spec = RunSpec(
            task=task,
            task_version="1",
            protocol="loglik",
            dataset=task,
            split="test",
            data_hash=f"sha256:{task}data",
            model="tiny-eval",
            model_revision="rev123",
            dtype="bfloat16",
            harness_version="0.1.0",
        )
        results.append(
            RunResult(
                key=spec.key(),
                spec=spec,
                scores=scores,
                n_samples=n,
                prompt_tokens=10 * n,
                started_at="2025-05-01T10:00:00Z",
                finished_at="2025-05-01T10:05:00Z",
                wall_seconds=300.0,
                data_source="test",
                samples_file=samples_file,
            )
        )
    identity = {"model": "tiny-eval", "revision": "rev123", "dtype": "bfloat16"}
    details = {"parameters": 135_000_000, "model_type": "instruct", "license": "apache-2.0"}
    return record_entry(database, "open_medical", results, identity, details, source="runs/x")


@pytest.fixture()
def database(tmp_path: Path) -> Database:
    database = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    import_published(database, published_csv(tmp_path / "open.csv"), track="open_medical")
    flowertune = tmp_path / "flowertune.csv"
    flowertune.write_text(FLOWERTUNE, encoding="utf-8")
    import_published(database, flowertune)
    return database


@pytest.fixture()
def evaluated_id(database: Database, tmp_path: Path) -> int:
    return add_evaluated(database, tmp_path / "runs")


@pytest.fixture()
def client(database: Database, evaluated_id: int) -> TestClient:
    return TestClient(create_app(database))


def entry_ids(database: Database) -> dict[str, int]:
    """Entry id by model name."""
    from sqlalchemy import select

    from medboard.results.db import Entry, Model

    with database.session() as session:
        rows = session.execute(select(Model.name, Entry.id).join(Entry.model)).all()
    return {name: entry_id for name, entry_id in rows}
