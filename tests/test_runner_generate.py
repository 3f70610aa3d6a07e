"""The runner under generative protocols: records, scores, run keys, resume, FlowerTune's quirks."""

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from medboard.backends.base import GenerateRequest, GenerateResult
from medboard.backends.fake import FakeBackend
from medboard.backends.hf import HFBackend
from medboard.data.store import DataStore
from medboard.errors import ModelError
from medboard.results.schema import RunSpec
from medboard.results.store import RunStore
from medboard.runner import EvalOptions, evaluate, run_spec
from medboard.tasks import REGISTRY
from medboard.tasks.protocols import UnknownProtocolError
from tests.conftest import import_fixture_tasks


def options(protocol: str, **more: object) -> EvalOptions:
    return EvalOptions(allow_data_mismatch=True, protocol=protocol, **more)  # type: ignore[arg-type]


class CountingBackend(FakeBackend):
    def __init__(self, options: str = "batch=1", fail_after: int | None = None) -> None:
        super().__init__(options)
        self.calls = 0
        self.fail_after = fail_after
        self.requests: list[GenerateRequest] = []

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # as if the process were stopped here
        self.calls += 1
        self.requests.extend(requests)
        return super().generate(requests)


@pytest.fixture()
def store(medboard_home: Path) -> DataStore:
    import_fixture_tasks(medboard_home)
    return DataStore(medboard_home / "data")


def records(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_generative_records_and_scores(store: DataStore, tmp_path: Path) -> None:
    tasks = REGISTRY.resolve(None, "medqa_4options,medmcqa,pubmedqa,headqa_en,mmlu_anatomy")
    out = tmp_path / "out"
    results = evaluate(tasks, FakeBackend(), data=store, options=options("generative", output=out))
    summary = json.loads((out / "results.json").read_text())
    for result in results:
        assert result.spec.protocol == "generative/1"
        assert set(result.scores) == {"acc", "unparsed"}
        rows = records(result.samples_file)
        assert len(rows) == result.n_samples
        for row in rows:
            assert set(row) >= {"id", "prompt_hash", "generated", "extracted", "pred", "gold"}
            assert row["parsed"] == (row["extracted"] is not None)
            assert (row["pred"] == -1) == (not row["parsed"])
            assert row["acc"] == float(row["pred"] == row["gold"])
            assert row["max_new_tokens"] == 32
        acc = sum(r["acc"] for r in rows) / len(rows)
        unparsed = sum(not r["parsed"] for r in rows) / len(rows)
        assert result.scores["acc"].value == pytest.approx(acc)
        assert result.scores["unparsed"].value == pytest.approx(unparsed)
        assert summary["results"][result.spec.task]["unparsed"] == pytest.approx(unparsed)
        assert result.extra["new_tokens"] == sum(r["n_new_tokens"] for r in rows)
    every = [r for result in results for r in records(result.samples_file)]
    assert any(r["parsed"] for r in every) and any(not r["parsed"] for r in every)
    anatomy = records(results[-1].samples_file)
    assert all("subject" in r for r in anatomy)


def test_a_biased_model_answers_its_letter(store: DataStore) -> None:
    result = evaluate(
        [REGISTRY.task("medmcqa")], FakeBackend("bias=B"), data=store, options=options("cot")
    )[0]
    rows = records(result.samples_file)
    assert all(r["extracted"] == "B" and r["pred"] == 1 for r in rows)
    assert result.scores["unparsed"].value == 0.0


def test_protocols_have_their_own_run_keys(store: DataStore) -> None:
    task = [REGISTRY.task("careqa_en")]
    keys = {
        evaluate(task, FakeBackend(), data=store, options=options(p))[0].key
        for p in ("loglik", "flowertune", "generative", "cot")
    }
    override = evaluate(
        task, FakeBackend(), data=store, options=options("generative", max_new_tokens=4)
    )[0]
    assert override.spec.protocol == "generative/1;max_new_tokens=4"
    assert len(keys | {override.key}) == 5


def test_loglik_run_keys_are_unchanged() -> None:
    # keys computed before generative protocols existed: a cached loglik run stays valid
    spec = RunSpec(
        task="medqa_4options",
        task_version="1",
        protocol="loglik/1",
        dataset="medqa",
        split="test",
        data_hash="abc",
        model="fake",
        model_revision="default",
        dtype="none",
        harness_version="0.1.0",
    )
    assert spec.key() == "a8aa50e13379a6f7e343251bf3b9c2d9b8ab473c1958624e4ab0689cd73b3deb"
    task = REGISTRY.task("medqa_4options")
    assert run_spec(task, FakeBackend(), "h", None).protocol == "loglik/1"


def test_finished_generative_run_is_not_recomputed(store: DataStore) -> None:
    task = [REGISTRY.task("pubmedqa")]
    first = CountingBackend()
    evaluate(task, first, data=store, options=options("generative"))
    again = CountingBackend()
    evaluate(task, again, data=store, options=options("generative"))
    assert first.calls > 0 and again.calls == 0


def test_interrupted_generative_run_resumes_with_identical_results(store: DataStore) -> None:
    task = [REGISTRY.task("headqa_en")]
    complete = evaluate(
        task,
        CountingBackend(),
        data=store,
        runs=RunStore(store.root.parent / "a"),
        options=options("cot"),
    )[0]
    runs = RunStore(store.root.parent / "b")
    with pytest.raises(KeyboardInterrupt):
        evaluate(task, CountingBackend(fail_after=1), data=store, runs=runs, options=options("cot"))
    assert runs.finished(complete.key) is None
    resumed_backend = CountingBackend()
    resumed = evaluate(task, resumed_backend, data=store, runs=runs, options=options("cot"))[0]
    assert resumed_backend.calls == complete.n_samples - 1  # the first batch came from the cache
    assert resumed.scores == complete.scores
    assert Path(resumed.samples_file).read_text() == Path(complete.samples_file).read_text()


def test_flowertune_leaks_the_gold_length_and_shares_duplicate_prompts(
    store: DataStore, medboard_home: Path
) -> None:
    # Three PubMedQA questions: one batch of FlowerTune's 16, so every question gets the token
    # count of the first one's gold answer; the third repeats the first one's prompt.
    fixture = Path(__file__).parent / "fixtures" / "tasks" / "pubmedqa.jsonl"
    base = json.loads(fixture.read_text().splitlines()[0])
    rows = [
        {**base, "id": "p1", "answer": "maybe"},
        {**base, "id": "p2", "question": "Another question?", "answer": "yes"},
        {**base, "id": "p3", "answer": "no"},
    ]
    store.put("pubmedqa", "test", rows, "test", "jsonl")
    backend = CountingBackend("batch=8")
    result = evaluate(
        [REGISTRY.task("pubmedqa")], backend, data=store, options=options("flowertune")
    )[0]
    assert [r.max_new_tokens for r in backend.requests] == [1, 1, 1]  # len("maybe") in words
    assert all(r.stop == () for r in backend.requests)
    assert all(r.prompt.startswith("<|im_start|>question\n") for r in backend.requests)
    samples = records(result.samples_file)
    assert samples[0]["output_of"] == "p3"  # the last question with this prompt wins
    assert "output_of" not in samples[1] and "output_of" not in samples[2]
    assert samples[0]["generated"] == samples[2]["generated"]


def test_a_model_that_cannot_generate_is_refused(store: DataStore) -> None:
    class ScoringOnly(FakeBackend):
        supports = frozenset({"loglikelihood"})

    with pytest.raises(ModelError, match="cannot generate text.*use --protocol loglik"):
        evaluate(
            [REGISTRY.task("medqa_4options")], ScoringOnly(), data=store, options=options("cot")
        )


def test_unknown_protocol_fails_before_any_work(store: DataStore) -> None:
    backend = CountingBackend()
    with pytest.raises(UnknownProtocolError):
        evaluate([REGISTRY.task("medqa_4options")], backend, data=store, options=options("chat"))
    with pytest.raises(UnknownProtocolError):
        evaluate(
            [REGISTRY.task("medqa_4options")],
            backend,
            data=store,
            options=options("loglik", max_new_tokens=3),
        )


def test_tiny_model_end_to_end(store: DataStore, tiny_model: Path) -> None:
    backend = HFBackend(str(tiny_model))
    tasks = REGISTRY.resolve(None, "medqa_4options,pubmedqa")
    for protocol in ("flowertune", "generative"):
        for result in evaluate(tasks, backend, data=store, options=options(protocol)):
            rows = records(result.samples_file)
            assert result.n_samples == len(rows) > 0
            assert result.prompt_tokens > 0
            assert all(0 < r["n_new_tokens"] <= r["max_new_tokens"] for r in rows)
            if protocol == "flowertune":  # one letter or label: one token of this tokenizer
                assert all(r["max_new_tokens"] == 1 for r in rows)
