"""Generate tests/tasks/golden/<task>.json: the exact requests lm-eval builds for the fixtures.

For every fixture record (tests/fixtures/tasks/<dataset>.jsonl) the golden file holds the context
string and the continuation strings of the log-likelihood requests that lm-eval itself builds
from the reference configs (bench/lmeval_tasks/), plus the gold choice index. They come from
`Task.build_all_requests`, the call lm-eval's evaluator makes, so nothing here re-implements a
prompt. tests/tasks/test_prompts.py then checks medboard's prompts against these files.

    python bench/make_golden_prompts.py   # needs lm-eval: pip install 'medboard[reference]'

Offline: the fixtures are read through `datasets`' json loader, no Hub access.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lmeval_tasks import TASKS, required_files, write_configs  # noqa: E402

from medboard.tasks import REGISTRY  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "tasks"
GOLDEN = REPO / "tests" / "tasks" / "golden"
# Few-shot goldens (<task>_<k>shot.json): lm-eval's first_n examples from the dev fixture.
FEWSHOT = {"mmlu_anatomy": 3, "cmmlu_anatomy": 3}


def golden_records(golden: Path, dataset: str, split: str) -> list[dict[str, Any]]:
    """The records of a dataset's split that the golden files of its tasks carry (`records`,
    by split): a benchmark added as its module and its golden file alone."""
    found: dict[str, dict[str, Any]] = {}
    for task in TASKS:
        path = golden / f"{task}.json"
        if REGISTRY.task(task).dataset == dataset and path.exists():
            records = json.loads(path.read_text(encoding="utf-8")).get("records", {})
            for record in records.get(split, []):
                found.setdefault(record["id"], record)
    return list(found.values())


def fixture_benchmarks(fixtures: Path, root: Path, golden: Path = GOLDEN) -> None:
    """Lay the fixtures out like a benchmarks folder (<dataset>/<split>.jsonl) under `root`.

    A fixture file stands for every split a config reads, unless <dataset>_<split>.jsonl exists
    (MMLU's dev split, the few-shot pool of the FEWSHOT goldens); a dataset without a fixture
    file takes the records its golden files carry.
    """
    for task in TASKS:
        for rel in required_files(task):
            dataset, split = rel.split("/")[0], Path(rel).stem
            own = fixtures / f"{dataset}_{split}.jsonl"  # a split with its own fixture
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if own.exists() or (fixtures / f"{dataset}.jsonl").exists():
                shutil.copyfile(own if own.exists() else fixtures / f"{dataset}.jsonl", target)
                continue
            records = golden_records(golden, dataset, split)
            if not records:
                raise SystemExit(f"{task}: no fixture for {rel} (a fixture file or `records`)")
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            target.write_text(text, encoding="utf-8")


def gold_index(task: Any, doc: dict[str, Any]) -> int:
    # As lm-eval's ConfigurableTask.process_results: an int target indexes the choices, a str
    # target is looked up among them (PubMedQA's "yes"/"no"/"maybe").
    target = task.doc_to_target(doc)
    if isinstance(target, str):
        return task.doc_to_choice(doc).index(target)
    return int(target)


def golden_for(task: Any) -> list[dict[str, Any]]:
    task.build_all_requests()
    by_doc: dict[int, list[Any]] = defaultdict(list)
    for instance in task.instances:
        by_doc[instance.doc_id].append(instance)
    samples = []
    for doc_id in sorted(by_doc):
        instances = sorted(by_doc[doc_id], key=lambda inst: inst.idx)
        contexts = {inst.arguments[0] for inst in instances}
        assert len(contexts) == 1, "one context per doc for single-input multiple choice"
        doc = instances[0].doc
        samples.append(
            {
                "id": doc["id"],
                "context": instances[0].arguments[0],
                "continuations": [inst.arguments[1] for inst in instances],
                "gold": gold_index(task, doc),
            }
        )
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--out", type=Path, default=GOLDEN)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval.tasks import TaskManager  # late: slow import, and only after the env is set

    with tempfile.TemporaryDirectory(prefix="medboard-golden-") as tmp:
        benchmarks, configs = Path(tmp) / "benchmarks", Path(tmp) / "configs"
        fixture_benchmarks(args.fixtures, benchmarks, args.out)
        _, names = write_configs(benchmarks, configs)
        manager = TaskManager(include_path=str(configs))
        loaded = manager.load(names)["tasks"]
        args.out.mkdir(parents=True, exist_ok=True)
        for task_name, shots in FEWSHOT.items():
            task = loaded[f"ref_{task_name}"]
            task.set_config(key="num_fewshot", value=shots)
            golden = {
                "task": task_name,
                "lm_eval_task": f"ref_{task_name}",
                "lm_eval_version": version("lm_eval"),
                "num_fewshot": shots,
                "samples": golden_for(task),
            }
            path = args.out / f"{task_name}_{shots}shot.json"
            path.write_text(json.dumps(golden, indent=2, ensure_ascii=False) + "\n", "utf-8")
            print(f"{path}: {len(golden['samples'])} samples", file=sys.stderr)
            loaded = manager.load(names)["tasks"]  # fresh tasks for the zero-shot goldens
        for task_name in TASKS:
            path = args.out / f"{task_name}.json"
            kept = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            golden = {
                "task": task_name,
                "lm_eval_task": f"ref_{task_name}",
                "lm_eval_version": version("lm_eval"),
                **({"records": kept["records"]} if "records" in kept else {}),
                "samples": golden_for(loaded[f"ref_{task_name}"]),
            }
            text = json.dumps(golden, indent=2, ensure_ascii=False) + "\n"
            path.write_text(text, encoding="utf-8")
            print(f"{path}: {len(golden['samples'])} samples", file=sys.stderr)


if __name__ == "__main__":
    main()
