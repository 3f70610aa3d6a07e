import json
from collections import Counter
from pathlib import Path

import pytest

from medboard.errors import DataError
from medboard.federated.data import (
    INSTRUCTIONS_FILE,
    PartitionSpec,
    check_dataset,
    load_partition,
    partition_sizes,
    prepare_instructions,
    split_eval,
    to_instruction,
)


def test_pairs_use_the_evaluation_prompts(fl_setup) -> None:
    rows = [json.loads(line) for line in (fl_setup.data / INSTRUCTIONS_FILE).open()]
    by_source: dict = {}
    for row in rows:
        by_source.setdefault(row["source"], row)
    medqa = by_source["medqa"]
    assert medqa["instruction"].startswith("Question: Which nerve supplies the heart (medqa")
    assert medqa["instruction"].endswith("\nD. Ulnar heart\nAnswer:")
    assert medqa["response"] == " A. Phrenic heart"
    assert "\nChoices:\nA. " in by_source["medmcqa"]["instruction"]
    assert by_source["pubmedqa"]["instruction"].startswith("Abstract: Patients were randomized.")
    assert by_source["pubmedqa"]["response"] == " yes"
    mmlu = by_source["mmlu_medical"]["instruction"]
    assert mmlu.startswith("The following are multiple choice questions (with answers) about")
    assert Counter(r["source"] for r in rows)["medqa"] == 24


def test_prepared_file_is_byte_identical_and_hashed(fl_setup, tmp_path: Path) -> None:
    again = prepare_instructions(fl_setup.benchmarks, tmp_path / "again")
    assert again["sha256"] == fl_setup.sha256
    assert (tmp_path / "again" / INSTRUCTIONS_FILE).read_bytes() == (
        fl_setup.data / INSTRUCTIONS_FILE
    ).read_bytes()
    manifest = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert manifest["records"] == 24 * 4 + 5 + 8


def test_missing_benchmark_file_is_a_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing dataset: .*medmcqa/train.jsonl does not exist"):
        prepare_instructions(tmp_path, tmp_path / "out")


def test_training_data_missing_or_changed(fl_setup, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing dataset: training data 'x' not found"):
        check_dataset("x", str(tmp_path / "nowhere"), "")
    assert check_dataset("x", str(fl_setup.data), fl_setup.sha256) == (
        fl_setup.data / INSTRUCTIONS_FILE
    )
    with pytest.raises(DataError, match="another version of the dataset"):
        check_dataset("x", str(fl_setup.data), "0" * 64)
    assert check_dataset("hub/id", "", "") is None


def _spec(fl_setup, partitioner: str, n: int = 4) -> PartitionSpec:
    return PartitionSpec(
        dataset="medboard/medical-instructions-v1",
        data_file=str(fl_setup.data / INSTRUCTIONS_FILE),
        num_partitions=n,
        partitioner=partitioner,
        partition_by="source",
        alpha=0.3,
        seed=42,
    )


def test_iid_partitions_cover_the_data_evenly(fl_setup) -> None:
    spec = _spec(fl_setup, "iid")
    sizes = partition_sizes(spec)
    assert sum(sizes) == 109 and max(sizes) - min(sizes) <= 1
    seen = [r["instruction"] for i in range(4) for r in load_partition(spec, i)]
    assert len(set(seen)) == len(seen)


def test_dirichlet_partitions_are_skewed_and_reproducible(fl_setup) -> None:
    from flwr_datasets import FederatedDataset
    from flwr_datasets.partitioner import DirichletPartitioner

    spec = _spec(fl_setup, "dirichlet")
    first = [load_partition(spec, i) for i in range(4)]
    assert sum(len(p) for p in first) == 109
    # A fresh FederatedDataset with the same seed draws the same split.
    fds = FederatedDataset(
        dataset="json",
        data_files={"train": spec.data_file},
        partitioners={
            "train": DirichletPartitioner(
                num_partitions=4,
                partition_by="source",
                alpha=0.3,
                min_partition_size=4,
                self_balancing=True,
                seed=42,
            )
        },
        seed=42,
    )
    again = fds.load_partition(2, "train")
    assert [r["instruction"] for r in again] == [r["instruction"] for r in first[2]]
    mixes = [Counter(r["source"] for r in fds.load_partition(i, "train")) for i in range(4)]
    shares = [m["medqa"] / sum(m.values()) for m in mixes]
    assert max(shares) - min(shares) > 0.2  # non-IID: sites differ in their mix of sources


def test_partition_out_of_range_and_eval_split(fl_setup) -> None:
    with pytest.raises(DataError, match="partition 4 is not in 0..3"):
        load_partition(_spec(fl_setup, "iid"), 4)
    rows = [{"instruction": str(i), "response": "x"} for i in range(10)]
    train, held = split_eval(rows, 4)
    assert len(held) == 2 and train + held == rows
    assert split_eval(rows[:3], 4) == (rows[:3], [])


def test_hub_dataset_shape_is_normalized() -> None:
    from medboard.federated.data import _normalize

    row = _normalize({"instruction": "Define angina.", "input": "", "output": "Chest pain."})
    assert row == {"instruction": "Define angina.\nAnswer:", "response": " Chest pain."}
    record = {"id": "1", "question": "Q?", "options": {"A": "a", "B": "b"}, "answer": "B"}
    assert to_instruction(record, "medqa")["response"] == " B. b"
