"""The runner: results, reuse of finished runs, resume from the answer cache, output files."""

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from medboard.backends.base import ChoiceRequest, ChoiceResult
from medboard.backends.fake import FakeBackend
from medboard.data.store import DataStore
from medboard.errors import DataError, MedboardError
from medboard.results.store import RunStore
from medboard.runner import EvalOptions, evaluate
from medboard.tasks import REGISTRY
from tests.conftest import import_fixture_tasks, read_json

MISMATCH_OK = EvalOptions(allow_data_mismatch=True)


class CountingBackend(FakeBackend):
    def __init__(self, options: str = "batch=1", fail_after: int | None = None) -> None:
        super().__init__(options)
        self.calls = 0
        self.fail_after = fail_after

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # as if the process were stopped here
        self.calls += 1
        return super().loglikelihood(requests)


@pytest.fixture()
def store(medboard_home: Path) -> DataStore:
    import_fixture_tasks(medboard_home)
    return DataStore(medboard_home / "data")


def test_fixture_data_is_refused_without_flag(store: DataStore, medboard_home: Path) -> None:
    with pytest.raises(DataError, match="has content hash .* pass --allow-data-mismatch"):
        evaluate([REGISTRY.task("medqa_4options")], FakeBackend(), data=store)
    assert not list((medboard_home / "runs").glob("*/result.json"))


def test_scores_and_output(store: DataStore, tmp_path: Path) -> None:
    tasks = REGISTRY.resolve(None, "medqa_4options,headqa_en,pubmedqa")
    options = EvalOptions(allow_data_mismatch=True, output=tmp_path / "out")
    results = evaluate(tasks, FakeBackend("bias=B"), data=store, options=options)
    summary = read_json(tmp_path / "out" / "results.json")
    assert set(summary["results"]) == {"medqa_4options", "headqa_en", "pubmedqa"}
    medqa = summary["results"]["medqa_4options"]
    samples = (tmp_path / "out" / "samples_medqa_4options.jsonl").read_text().splitlines()
    import json

    records = [json.loads(line) for line in samples]
    assert all(r["pred"] == 1 for r in records)  # the model always says B
    assert medqa["acc"] == sum(r["gold"] == 1 for r in records) / len(records)
    assert "acc_norm" in summary["results"]["headqa_en"]
    assert "acc_norm" not in summary["results"]["pubmedqa"]
    assert results[0].spec.data_hash != REGISTRY.task("medqa_4options").expected_hash


def test_what_exists_after_the_first_batch_is_frozen(store: DataStore) -> None:
    import gc

    gc.unfreeze()
    evaluate([REGISTRY.task("medmcqa")], CountingBackend(), data=store, options=MISMATCH_OK)
    assert gc.get_freeze_count() > 0  # modules, the backend: out of the collector's way


def test_finished_run_is_not_recomputed(store: DataStore) -> None:
    task = [REGISTRY.task("medmcqa")]
    first = CountingBackend()
    evaluate(task, first, data=store, options=MISMATCH_OK)
    again = CountingBackend()
    result = evaluate(task, again, data=store, options=MISMATCH_OK)[0]
    assert first.calls > 0 and again.calls == 0
    assert result.n_samples > 0


def test_interrupted_run_resumes_with_identical_results(store: DataStore) -> None:
    task = [REGISTRY.task("headqa_en")]
    complete = evaluate(
        task,
        CountingBackend(),
        data=store,
        runs=RunStore(store.root.parent / "a"),
        options=MISMATCH_OK,
    )[0]
    runs = RunStore(store.root.parent / "b")
    with pytest.raises(KeyboardInterrupt):
        evaluate(task, CountingBackend(fail_after=1), data=store, runs=runs, options=MISMATCH_OK)
    assert runs.finished(complete.key) is None
    resumed_backend = CountingBackend()
    resumed = evaluate(task, resumed_backend, data=store, runs=runs, options=MISMATCH_OK)[0]
    assert resumed_backend.calls == complete.n_samples - 1  # the first batch came from the cache
    assert resumed.scores == complete.scores
    assert Path(resumed.samples_file).read_text() == Path(complete.samples_file).read_text()


def test_limit_and_model_change_the_key(store: DataStore) -> None:
    task = [REGISTRY.task("careqa_en")]
    a = evaluate(task, FakeBackend(), data=store, options=MISMATCH_OK)[0]
    b = evaluate(
        task, FakeBackend(), data=store, options=EvalOptions(limit=1, allow_data_mismatch=True)
    )[0]
    c = evaluate(task, FakeBackend("bias=A"), data=store, options=MISMATCH_OK)[0]
    assert len({a.key, b.key, c.key}) == 3
    assert b.n_samples == 1


def test_a_finished_run_of_one_question_is_reused(store: DataStore) -> None:
    """One question has no standard error (nan, written as null): the stored run reads back."""
    task = [REGISTRY.task("careqa_en")]
    one = EvalOptions(limit=1, allow_data_mismatch=True)
    first = evaluate(task, CountingBackend(), data=store, options=one)[0]
    assert math.isnan(first.scores["acc"].stderr)
    again = CountingBackend()
    second = evaluate(task, again, data=store, options=one)[0]
    assert again.calls == 0 and second.key == first.key
    assert second.scores["acc"].value == first.scores["acc"].value
    assert math.isnan(second.scores["acc"].stderr)


def _strict_json(path: Path) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path.name} holds {constant}, which strict JSON readers refuse")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_the_output_of_a_run_of_one_question_is_strict_json(
    store: DataStore, tmp_path: Path
) -> None:
    """`--output`'s results.json held Python's NaN for the undefined standard error."""
    options = EvalOptions(limit=1, allow_data_mismatch=True, output=tmp_path)
    [result] = evaluate([REGISTRY.task("careqa_en")], FakeBackend(), data=store, options=options)
    summary = _strict_json(tmp_path / "results.json")
    assert summary["results"]["careqa_en"]["acc_stderr"] is None
    assert summary["runs"]["careqa_en"]["scores"]["acc"]["stderr"] is None
    assert summary["results"]["careqa_en"]["acc"] == result.scores["acc"].value
    assert (
        _strict_json(Path(result.samples_file).parent / "result.json")["scores"]["acc"]["stderr"]
        is None
    )


def test_an_output_folder_that_cannot_be_written_fails_before_any_work(
    store: DataStore, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    for folder, message in [
        (tmp_path / "a-file", "is a file"),
        (tmp_path / "a-file" / "below", "cannot write to the output folder .*a-file/below: "),
    ]:
        backend = CountingBackend()
        options = EvalOptions(allow_data_mismatch=True, output=folder)
        with pytest.raises(MedboardError, match=message):
            evaluate([REGISTRY.task("careqa_en")], backend, data=store, options=options)
        assert backend.calls == 0
    done = tmp_path / "new" / "out"
    evaluate([REGISTRY.task("careqa_en")], FakeBackend(), data=store,
             options=EvalOptions(allow_data_mismatch=True, output=done))  # fmt: skip
    assert sorted(p.name for p in done.iterdir()) == ["results.json", "samples_careqa_en.jsonl"]


def test_stale_cache_entry_is_recomputed(store: DataStore) -> None:
    task = REGISTRY.task("pubmedqa")
    runs = RunStore()
    backend = CountingBackend()
    result = evaluate([task], backend, data=store, runs=runs, options=MISMATCH_OK)[0]
    (runs.folder(result.key) / "result.json").unlink()
    cache = runs.cache(result.key)
    sample_id = next(iter(cache.get_all()))
    cache.put_many([(sample_id, "not-this-prompt", {"logprobs": [0, 0, 0]})])
    cache.close()
    again = CountingBackend()
    evaluate([task], again, data=store, runs=runs, options=MISMATCH_OK)
    assert again.calls == 1


class PromptRecorder(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[str] = []

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        self.contexts += [r.context for r in requests]
        return super().loglikelihood(requests)


def put_dev_pool(store: DataStore) -> None:
    from medboard.data.records import read_jsonl
    from tests.conftest import FIXTURES

    path = FIXTURES / "tasks" / "mmlu_medical_dev.jsonl"
    store.put("mmlu_medical", "dev", list(read_jsonl(path)), str(path), "jsonl")


def test_shots_put_the_first_dev_examples_before_each_question(store: DataStore) -> None:
    put_dev_pool(store)
    task = [REGISTRY.task("mmlu_anatomy")]
    backend = PromptRecorder()
    options = EvalOptions(shots=2, allow_data_mismatch=True)
    two_shot = evaluate(task, backend, data=store, options=options)[0]
    zero_shot = evaluate(task, FakeBackend(), data=store, options=MISMATCH_OK)[0]
    assert two_shot.key != zero_shot.key and two_shot.spec.shots == 2
    for context in backend.contexts:
        assert context.count("\nAnswer: ") == 2  # two solved examples, then the question
        assert "elbow and supinates" in context and "femoral nerve" in context
        assert "adult human skull" not in context  # the third dev example is not used


def test_shots_refuse_what_cannot_be_reproduced(store: DataStore) -> None:
    with pytest.raises(MedboardError, match="no few-shot pool mmlu_medical/dev"):
        evaluate(
            [REGISTRY.task("mmlu_anatomy")],
            FakeBackend(),
            data=store,
            options=EvalOptions(shots=1, allow_data_mismatch=True),
        )
    put_dev_pool(store)
    with pytest.raises(MedboardError, match="--shots 4: mmlu_anatomy has only 3 examples"):
        evaluate(
            [REGISTRY.task("mmlu_anatomy")],
            FakeBackend(),
            data=store,
            options=EvalOptions(shots=4, allow_data_mismatch=True),
        )
    with pytest.raises(MedboardError, match="medqa_4options takes its few-shot examples"):
        evaluate(
            [REGISTRY.task("medqa_4options")],
            FakeBackend(),
            data=store,
            options=EvalOptions(shots=1, allow_data_mismatch=True),
        )
