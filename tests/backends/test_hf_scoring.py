"""HFBackend's scoring passes (hf_scoring): the shared prefix computed once, the greedy flag."""

from pathlib import Path

import pytest
import torch

from medboard.backends import hf_scoring
from medboard.backends.hf import HFBackend
from tests.backends.test_hf import FEWSHOT_REQUESTS, brute_force


def test_greedy_reads_the_first_maximum_like_argmax() -> None:
    # the greedy flag uses max(dim).indices; ties must go to the first index, as argmax's do
    rows = torch.tensor([[0.5, 2.0, 2.0, -1.0], [3.0, 3.0, 3.0, 3.0], [-2.0, -1.0, -1.0, -1.0]])
    assert rows.max(dim=-1).indices.tolist() == rows.argmax(dim=-1).tolist() == [1, 0, 1]


def test_shared_prefix_runs_once_with_the_same_numbers(
    tiny_model: Path, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = HFBackend(str(tiny_model))
    rows = [row for r in FEWSHOT_REQUESTS for row in backend.rows(r)]
    shared = backend._reusable_prefix(rows)
    assert shared >= hf_scoring.MIN_SHARED_PREFIX  # the five examples (and more) are shared
    seen: list[int] = []
    forward = HFBackend._forward
    monkeypatch.setattr(
        HFBackend, "_forward", lambda self, ids, s, at: seen.append(s) or forward(self, ids, s, at)
    )
    reused = backend.loglikelihood(FEWSHOT_REQUESTS)
    assert seen == [shared]
    # every row recomputed from its first token gives the same numbers, and so does lm-eval's
    # recipe of one full forward per choice
    monkeypatch.setattr(hf_scoring, "MIN_SHARED_PREFIX", 10**9)
    full = backend.loglikelihood(FEWSHOT_REQUESTS)
    assert seen[-1] == 0
    for a, b, request in zip(reused, full, FEWSHOT_REQUESTS, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
        assert a.greedy == b.greedy
        assert a.logprobs == pytest.approx(brute_force(tiny_model, request), abs=1e-4)
