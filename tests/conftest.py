"""Shared fixtures: a tiny random causal LM with a real byte-level BPE tokenizer, on disk."""

import gc
import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

CORPUS = [
    "Question: Which nerve innervates the diaphragm?\nA. Phrenic\nB. Vagus\nAnswer: A",
    "Abstract: Patients were randomized.\nQuestion: Does it help?\nAnswer: yes no maybe",
    "The following are multiple choice questions (with answers) about anatomy.",
    "Choices:\nC. Radial\nD. Ulnar\nThe Goldman-Hodgkin-Katz equation. The Nernst equation.",
]


def build_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    fast.save_pretrained(folder)


def build_tiny_model(folder: Path, make: Any, scale: float, seed: int = 0) -> Path:
    """The test tokenizer and `make(vocab_size)`, a random causal LM, saved in `folder`.

    Random init is near-uniform; weights multiplied by `scale` make predictions differ
    between choices.
    """
    import torch
    from transformers import AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer(folder)
    vocab = len(AutoTokenizer.from_pretrained(folder))
    torch.manual_seed(seed)
    model = make(vocab)
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(scale)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_llama(
    folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0, act: str = "silu"
) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    def make(vocab: int) -> Any:
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            hidden_act=act,
        )
        return LlamaForCausalLM(config)

    return build_tiny_model(folder, make, scale=8.0, seed=seed)


@pytest.fixture(autouse=True)
def _thawed_heap() -> Any:
    """evaluate() freezes the heap for the rest of the process (heap.py), as a CLI run wants;
    the test process runs many evaluations, so each test's frozen objects are thawed after it."""
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def medboard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty medboard home (data store, runs, model cache) for one test, which is also its
    machine cache (probe verdicts, built kernels): each test finds the machine unmeasured."""
    home = tmp_path / "home"
    monkeypatch.setenv("MEDBOARD_HOME", str(home))
    monkeypatch.setenv("MEDBOARD_MACHINE_CACHE", str(home))
    return home


GOLDEN = Path(__file__).parent / "tasks" / "golden"


def fixture_records(dataset: str, split: str = "") -> list[dict]:
    """A dataset's fixture records: tests/fixtures/tasks/<dataset>[_<split>].jsonl, else the
    records the golden files of its tasks carry (`records`: a benchmark added as one module and
    its golden file), each record once, in the tasks' order."""
    from medboard.data.records import read_jsonl
    from medboard.tasks import BUILTIN_TASKS, REGISTRY

    path = FIXTURES / "tasks" / f"{dataset}{'_' + split if split else ''}.jsonl"
    if path.exists():
        return list(read_jsonl(path))
    found: dict[str, dict] = {}
    for name in BUILTIN_TASKS:
        golden = GOLDEN / f"{name}.json"
        if REGISTRY.task(name).dataset == dataset and golden.exists():
            records = json.loads(golden.read_text(encoding="utf-8")).get("records", {})
            for record in records.get(split or "test", []):
                found.setdefault(record["id"], record)
    if not found:
        raise FileNotFoundError(f"no fixture records for {dataset} {split}: {path}")
    return list(found.values())


def import_fixture_tasks(home: Path) -> None:
    """Put the task fixtures (tests/fixtures/tasks, golden records) into the store of `home`."""
    from medboard.data.store import DataStore
    from medboard.tasks import BUILTIN_TASKS, REGISTRY

    store = DataStore(home / "data")
    done: set[tuple[str, str]] = set()
    for name in BUILTIN_TASKS:
        task = REGISTRY.task(name)
        if (task.dataset, task.split) in done:
            continue
        records = fixture_records(task.dataset)
        store.put(task.dataset, task.split, records, f"fixtures:{task.dataset}", "jsonl")
        done.add((task.dataset, task.split))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def score_with_kernel(
    model: Path, option: str, mine: str, requests: list[Any], **options: Any
) -> tuple[Any, Any, list[Any], list[Any], list[str]]:
    """A medboard kernel against torch's code: backends of `model` with the kernel `option`
    (attention, activation) set to `mine` and to torch, the requests scored by each, and the
    names of the profiler events of the kernel's scoring."""
    import torch

    from medboard.backends import create_backend

    kernel = create_backend(str(model), **{option: mine}, **options)
    plain = create_backend(str(model), **{option: "torch"}, **options)
    with torch.profiler.profile() as profile:
        got = kernel.loglikelihood(requests)
    events = [e.name for e in profile.events()]
    return kernel, plain, got, plain.loglikelihood(requests), events


def made_up_clock(monkeypatch: Any, seconds: dict[str, float]) -> list[list[str]]:
    """probe.timings as a machine on which each candidate takes `seconds[name]`: the candidates
    still run (kernels and compiled code included), only the clock is made up. Returns the
    names of each set of candidates timed, as they are timed. Only with the machine cache in
    the test's home (medboard_home): made-up verdicts must never reach the real one."""
    from medboard.backends import probe
    from medboard.paths import home, machine_cache

    assert machine_cache() == home() != Path.home() / ".cache" / "medboard", "use medboard_home"
    timed: list[list[str]] = []

    def timings(candidates: dict, repeats: int = probe.REPEATS) -> dict[str, float]:
        timed.append(list(candidates))
        for call in candidates.values():
            call()
        return {name: seconds[name] for name in candidates}

    monkeypatch.setattr(probe, "timings", timings)
    return timed
