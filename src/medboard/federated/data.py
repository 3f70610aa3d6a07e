"""Medical instruction pairs for federated fine-tuning, and their partitioning across sites.

`prepare_instructions` turns the training and few-shot splits of the shared benchmarks (never
their evaluation splits) into instruction pairs in the evaluation prompt format: a question with
its options -> the answer letter and text (PubMedQA: the abstract and question -> yes/no/maybe).
The file is written outside the repository with a manifest that carries its sha256, which the
track's static section pins.

`load_partition` gives one site its share through flwr-datasets: a `FederatedDataset` over the
local JSON file (or a Hub id, for real runs) with an IID or a Dirichlet partitioner, shuffled
with the static partition seed, so every site and every run sees the same split.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medboard.errors import DataError, HubUnreachableError
from medboard.federated.config import StaticSection
from medboard.paths import atomic_write_bytes, atomic_write_text, shared_benchmarks

INSTRUCTIONS_FILE = "medical-instructions.jsonl"
MANIFEST_FILE = "manifest.json"
# One file per site for the deployment engine: site-0.jsonl, site-1.jsonl, ...
SITE_FILE = "site-{}.jsonl"
# (benchmark folder, split file): training and few-shot pools only; no evaluation split.
SOURCES: tuple[tuple[str, str], ...] = (
    ("medmcqa", "train.jsonl"),
    ("medqa", "validation.jsonl"),
    ("pubmedqa", "train.jsonl"),
    ("mmlu_medical", "dev.jsonl"),
    ("mmlu_medical", "validation.jsonl"),
    ("headqa", "validation.jsonl"),
)
# Sources prompted as the evaluation prompts medmcqa and careqa_en (HEAD-QA: the same exams).
CHOICES_FORMAT = ("medmcqa", "headqa")
# Dirichlet draws are retried until every site has at least this many examples.
MIN_PARTITION_SIZE = 4


def to_instruction(record: dict[str, Any], source: str) -> dict[str, str]:
    """One benchmark record as an instruction pair in the evaluation prompt format."""
    question = str(record["question"]).strip()
    options: dict[str, str] = record["options"]
    answer = str(record["answer"])
    lines = "\n".join(f"{key}. {text}" for key, text in options.items())
    response = f" {answer}. {options[answer]}"
    if "context" in record:  # PubMedQA: the answer is the label itself
        prompt = f"Abstract: {record['context']}\nQuestion: {question}\nAnswer:"
        response = f" {answer}"
    elif source in CHOICES_FORMAT:  # as medmcqa and careqa_en are prompted
        prompt = f"Question: {question}\nChoices:\n{lines}\nAnswer:"
    elif record.get("subject") and source == "mmlu_medical":
        subject = str(record["subject"]).replace("_", " ")
        prompt = (
            f"The following are multiple choice questions (with answers) about {subject}."
            f"\n\n{question}\n{lines}\nAnswer:"
        )
    else:  # as medqa_4options is prompted
        prompt = f"Question: {question}\n{lines}\nAnswer:"
    return {
        "id": f"{source}/{record['id']}",
        "source": source,
        "instruction": prompt,
        "response": response,
    }


def benchmarks_dir(path: str | Path | None) -> Path:
    """--benchmarks, else MEDBOARD_BENCHMARKS, else ../shared/benchmarks."""
    found = Path(path).expanduser() if path else shared_benchmarks()
    if found is None or not found.is_dir():
        raise DataError(
            f"missing dataset: no benchmark folder at {found or '../shared/benchmarks'} "
            "(pass --benchmarks PATH or set MEDBOARD_BENCHMARKS)"
        )
    return found


def prepare_instructions(
    benchmarks: Path, out: Path, sources: tuple[tuple[str, str], ...] = SOURCES
) -> dict[str, Any]:
    """Write `out/medical-instructions.jsonl` and its manifest; returns the manifest."""
    rows: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    for folder, split in sources:
        path = benchmarks / folder / split
        if not path.is_file():
            raise DataError(f"missing dataset: {path} does not exist")
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    rows.append(to_instruction(record, folder))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise DataError(f"{path}:{number}: not a benchmark record ({exc})") from None
        counts[f"{folder}/{split}"] = len(rows) - sum(counts.values())
    if not rows:
        raise DataError(f"missing dataset: no records in {benchmarks}")
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    data = text.encode("utf-8")
    target = out / INSTRUCTIONS_FILE
    atomic_write_bytes(target, data)
    manifest = {
        "file": INSTRUCTIONS_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "records": len(rows),
        "sources": counts,
        "benchmarks": str(benchmarks),
    }
    atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_data_file(data_path: str) -> Path:
    """The local instruction file: `data-path` may name the file or the folder holding it."""
    path = Path(data_path).expanduser()
    if path.is_dir():
        path = path / INSTRUCTIONS_FILE
    return path


def check_dataset(dataset: str, data_path: str, sha256: str) -> Path | None:
    """The local file to train on (None for a Hub dataset), checked against the static hash."""
    if not data_path:
        return None
    path = resolve_data_file(data_path)
    if not path.is_file():
        raise DataError(
            f"missing dataset: training data '{dataset}' not found at {path} "
            "(run 'medboard fl prepare-data --out DIR' and set data-path)"
        )
    if sha256:
        actual = file_sha256(path)
        if actual != sha256:
            raise DataError(
                f"training data {path} has sha256 {actual[:12]}, the static section pins "
                f"{sha256[:12]} for '{dataset}': it is another version of the dataset"
            )
    return path


@dataclass(frozen=True)
class PartitionSpec:
    dataset: str
    data_file: str  # empty: load `dataset` from the Hub
    num_partitions: int
    partitioner: str
    partition_by: str
    alpha: float
    seed: int


def partition_spec(
    static: StaticSection, data_file: str, num_partitions: int | None = None
) -> PartitionSpec:
    """The partitioning of the static section (static.num-clients sites unless told)."""
    return PartitionSpec(
        dataset=static.dataset,
        data_file=data_file,
        num_partitions=num_partitions or static.num_clients,
        partitioner=static.partitioner,
        partition_by=static.partition_by,
        alpha=static.dirichlet_alpha,
        seed=static.partition_seed,
    )


_DATASETS: dict[PartitionSpec, Any] = {}


def _partitioner(spec: PartitionSpec) -> Any:
    from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner

    if spec.partitioner == "iid":
        return IidPartitioner(num_partitions=spec.num_partitions)
    return DirichletPartitioner(
        num_partitions=spec.num_partitions,
        partition_by=spec.partition_by,
        alpha=spec.alpha,
        min_partition_size=MIN_PARTITION_SIZE,
        self_balancing=True,
        seed=spec.seed,
    )


def federated_dataset(spec: PartitionSpec) -> Any:
    """One FederatedDataset per process and spec (the split is computed once)."""
    if spec in _DATASETS:
        return _DATASETS[spec]
    try:
        from flwr_datasets import FederatedDataset
    except ImportError:
        from medboard.errors import MissingExtraError

        raise MissingExtraError("flwr-datasets", "fl") from None
    kwargs: dict[str, Any] = {}
    name = spec.dataset
    if spec.data_file:
        name, kwargs = "json", {"data_files": {"train": spec.data_file}}
    fds = FederatedDataset(
        dataset=name,
        partitioners={"train": _partitioner(spec)},
        shuffle=True,
        seed=spec.seed,
        **kwargs,
    )
    _DATASETS[spec] = fds
    return fds


def _normalize(row: dict[str, Any]) -> dict[str, str]:
    """Our pairs as they are; Alpaca-style Hub datasets (instruction/input/output) mapped."""
    if "response" in row:
        return {"instruction": str(row["instruction"]), "response": str(row["response"])}
    if "output" in row:
        prompt = str(row.get("instruction", "")).strip()
        if row.get("input"):
            prompt = f"{prompt}\n{row['input']}".strip()
        return {"instruction": f"{prompt}\nAnswer:", "response": f" {row['output']}"}
    raise DataError(f"dataset rows need instruction/response or instruction/input/output: {row}")


def load_partition(spec: PartitionSpec, partition_id: int) -> list[dict[str, str]]:
    """The instruction pairs of one site."""
    if not 0 <= partition_id < spec.num_partitions:
        raise DataError(f"partition {partition_id} is not in 0..{spec.num_partitions - 1}")
    try:
        partition = federated_dataset(spec).load_partition(partition_id, "train")
    except (ConnectionError, OSError) as exc:
        if spec.data_file:
            raise DataError(f"missing dataset: cannot read {spec.data_file}: {exc}") from None
        raise HubUnreachableError(
            f"cannot load dataset '{spec.dataset}' from the Hub ({type(exc).__name__}): "
            "prepare a local copy and set data-path"
        ) from None
    except ValueError as exc:  # e.g. a Dirichlet draw that leaves a site too small
        raise DataError(f"cannot partition '{spec.dataset}': {exc}") from None
    return [_normalize(row) for row in partition]


def partition_sizes(spec: PartitionSpec) -> list[int]:
    fds = federated_dataset(spec)
    return [len(fds.load_partition(i, "train")) for i in range(spec.num_partitions)]


def split_eval(rows: list[dict[str, str]], eval_examples: int) -> tuple[list, list]:
    """(train, held-out) rows of a site: the last `eval_examples` rows are held out."""
    held = min(eval_examples, len(rows) // 4)
    if held <= 0:
        return rows, []
    return rows[:-held], rows[-held:]


def write_site_files(spec: PartitionSpec, folder: Path) -> list[Path]:
    """Each site's partition as its own file (`site-N.jsonl`), the rows simulation gives it.

    A SuperNode of the deployment engine reads only its file (its node config's `data-path`),
    and trains on exactly what the same site trains on in simulation.
    """
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # the command's stderr is for its one-line errors
    paths = []
    for site in range(spec.num_partitions):
        rows = load_partition(spec, site)
        text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
        path = folder / SITE_FILE.format(site)
        atomic_write_text(path, text)
        paths.append(path)
    return paths


def read_site_file(path: Path) -> list[dict[str, str]]:
    """One site's instruction pairs (JSONL, `instruction` and `response` strings per line)."""
    if not path.is_file():
        raise DataError(f"missing dataset: the site's data file {path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pair = {"instruction": row["instruction"], "response": row["response"]}
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(
                    f"malformed site data: {path}:{number} is not an instruction pair "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            if not all(isinstance(v, str) for v in pair.values()):
                raise DataError(
                    f"malformed site data: {path}:{number}: instruction and response must be text"
                )
            rows.append(pair)
    if not rows:
        raise DataError(f"malformed site data: {path} holds no instruction pairs")
    return rows
