"""Submissions: checked specs, duplicates, rate limit, atomic claims, leases."""

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import update

from medboard.errors import DuplicateSubmissionError, SubmissionError
from medboard.queue.claims import claim, fail, finish_in, heartbeat
from medboard.queue.submissions import SubmitRequest, list_submissions, submit, submit_all
from medboard.results.db import Database, Submission, open_database, utcnow


@pytest.fixture()
def database(tmp_path: Path):
    return open_database(f"sqlite:///{tmp_path / 'q.db'}")


def test_submit_queues_and_refuses_duplicates(tiny_model: Path, medboard_home, database) -> None:
    job = submit(database, SubmitRequest(model=str(tiny_model), dtype="float32", submitter="a"))
    assert job.status == "pending" and job.info["parameters"] > 0
    with pytest.raises(DuplicateSubmissionError, match=f"#{job.id} \\(pending\\)") as dup:
        submit(database, SubmitRequest(model=str(tiny_model), dtype="float32", submitter="b"))
    assert dup.value.submission_id == job.id
    # another precision is another submission
    other = submit(database, SubmitRequest(model=str(tiny_model), dtype="bfloat16"))
    assert [s.id for s in list_submissions(database)] == [other.id, job.id]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (SubmitRequest(model=""), "no model given"),
        (SubmitRequest(model="x", track="nowhere"), "unknown track 'nowhere'"),
        (SubmitRequest(model="x", dtype="int4"), "unknown dtype 'int4'"),
        (SubmitRequest(model="/no/such/model"), "cannot be submitted: model path .* not exist"),
    ],
)
def test_bad_submissions(database, medboard_home, request_, message) -> None:
    with pytest.raises(SubmissionError, match=message):
        submit(database, request_)
    assert list_submissions(database) == []


def test_rate_limit_per_submitter(tiny_model, medboard_home, database, monkeypatch) -> None:
    monkeypatch.setenv("MEDBOARD_SUBMIT_LIMIT", "2")
    for dtype in ("float32", "bfloat16"):
        submit(database, SubmitRequest(model=str(tiny_model), dtype=dtype, submitter="eve"))
    with pytest.raises(SubmissionError, match="rate limit: 2 submissions from eve"):
        submit(database, SubmitRequest(model=str(tiny_model), dtype="float16", submitter="eve"))
    submit(database, SubmitRequest(model=str(tiny_model), dtype="float16", submitter="bob"))


def test_submit_all_queues_every_request_or_none(tiny_model, medboard_home, database) -> None:
    entry = {"team": "t", "comm_cost_gb": 0.5, "extra": {"federated": {"rounds": 3}}}

    def federated(protocol: str) -> SubmitRequest:
        return SubmitRequest(
            model=str(tiny_model), track="flowertune_medical", dtype="float32",
            protocol=protocol, model_type="federated", entry=entry, limit=5,
        )  # fmt: skip

    # flowertune is a protocol of federated runs only (the published table's)
    with pytest.raises(SubmissionError, match="unknown protocol 'flowertune'"):
        submit(database, SubmitRequest(model=str(tiny_model), protocol="flowertune"))
    first = submit(database, federated("loglik"))
    with pytest.raises(DuplicateSubmissionError, match=f"#{first.id}"):  # loglik is queued
        submit_all(database, [federated("flowertune"), federated("loglik")])
    assert [s.id for s in list_submissions(database)] == [first.id]  # none of the two
    jobs = submit_all(database, [federated("flowertune"), federated("generative")])
    assert [j.protocol for j in jobs] == ["flowertune", "generative"]
    assert jobs[0].info["entry"] == entry and jobs[0].info["limit"] == 5


def test_claim_only_takes_the_jobs_asked_for(database) -> None:
    ids = _queue(database, 3)
    assert claim(database, "w", only=[ids[2]]).id == ids[2]
    assert claim(database, "w", only=[ids[2]]) is None
    assert claim(database, "w").id == ids[0]


def _queue(database, n: int) -> list[int]:
    ids = []
    with database.session() as session:
        for i in range(n):
            job = Submission(model=f"m{i}", revision=f"r{i}", dtype="float32", track="open_medical")
            session.add(job)
            session.flush()
            ids.append(job.id)
    return ids


def test_claim_is_oldest_first_and_exclusive(database) -> None:
    ids = _queue(database, 2)
    first = claim(database, "w1")
    second = claim(database, "w2")
    assert (first.id, second.id) == tuple(ids)
    assert first.status == "running" and first.worker == "w1" and first.attempts == 1
    assert claim(database, "w3") is None
    assert heartbeat(database, first.id, "w1")
    assert not heartbeat(database, first.id, "w2")  # not w2's job
    with database.session() as session:
        assert finish_in(session, first.id, "w1", entry_id=None)
    assert fail(database, second.id, "w2", "model broke")
    with database.session() as session:
        assert not finish_in(session, second.id, "w2", entry_id=None)  # ended already
    states = {s.id: (s.status, s.reason) for s in list_submissions(database)}
    assert states == {ids[0]: ("finished", None), ids[1]: ("failed", "model broke")}


def test_concurrent_claims_never_share_a_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    ids = _queue(open_database(url), 30)
    taken: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        database = Database(url)  # one engine per worker, as separate processes have
        while (job := claim(database, name)) is not None:
            with lock:
                taken.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == ids


def test_expired_lease_is_reclaimed(database) -> None:
    (job_id,) = _queue(database, 1)
    assert claim(database, "dead", lease_seconds=60).id == job_id
    assert claim(database, "alive", lease_seconds=60) is None
    with database.session() as session:  # the dead worker's last beat was long ago
        session.execute(update(Submission).values(heartbeat_at=utcnow().replace(year=2000)))
    again = claim(database, "alive", lease_seconds=60)
    assert again.id == job_id and again.worker == "alive" and again.attempts == 2
    assert not heartbeat(database, job_id, "dead")  # the dead worker learns it lost the job


def _bert_with_weights(folder: Path, tiny_model: Path) -> Path:
    """A real BERT encoder (config, safetensors, tokenizer): loads, but is not a causal LM."""
    from transformers import BertConfig, BertModel

    config = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model / name).exists():
            shutil.copy(tiny_model / name, folder / name)
    return folder


def _remote_code_model(folder: Path, tiny_model: Path) -> Path:
    """A model whose architecture exists only as Python code shipped beside its config."""
    shutil.copytree(tiny_model, folder)
    (folder / "configuration_mine.py").write_text(
        "from transformers import PretrainedConfig\n\n"
        "class MineConfig(PretrainedConfig):\n    model_type = 'mine'\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "mine"
    config["architectures"] = ["MineForCausalLM"]
    config["auto_map"] = {"AutoConfig": "configuration_mine.MineConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_bert_with_weights, r"is not a causal language model \(model type 'bert'"),
        (_remote_code_model, "needs remote code \\(configuration_mine.py named by auto_map"),
    ],
)
def test_non_causal_and_remote_code_models_are_refused(
    build, message, tiny_model: Path, tmp_path: Path, medboard_home, database
) -> None:
    folder = build(tmp_path / "candidate", tiny_model)
    with pytest.raises(SubmissionError, match=message):
        submit(database, SubmitRequest(model=str(folder), dtype="float32"))
    assert list_submissions(database) == []
    # the remote code was never imported
    assert "configuration_mine" not in sys.modules
