from medboard.results.schema import RunSpec

BASE = dict(
    task="pubmedqa",
    task_version="1",
    protocol="loglik/1",
    dataset="pubmedqa",
    split="test",
    data_hash="d" * 64,
    model="/a/model",
    model_revision="sha256:" + "a" * 64,
    dtype="float32",
    harness_version="0.1.0",
)


def test_key_covers_what_decides_the_numbers() -> None:
    key = RunSpec(**BASE).key()
    for field, value in [
        ("task_version", "2"),
        ("data_hash", "e" * 64),
        ("model_revision", "sha256:b"),
        ("dtype", "bfloat16"),
        ("adapter_hash", "f" * 64),
        ("limit", 10),
        ("shots", 5),
        ("harness_version", "0.2.0"),
        ("protocol", "generative/1"),
        ("backend", "vllm-0.32.0"),  # another engine on the same folder: another run
    ]:
        assert RunSpec(**{**BASE, field: value}).key() != key, field


def test_model_path_is_a_label_not_an_identity() -> None:
    moved = RunSpec(**{**BASE, "model": "/elsewhere/same-weights"})
    assert moved.key() == RunSpec(**BASE).key()


def test_keys_without_a_backend_are_those_of_before() -> None:
    # the transformers backend names none: its runs keep the keys they were stored under
    assert (
        RunSpec(**BASE).key() == "2d6b6bc6d28c630fb80309572b7661e52a9d3b5ce0255e9064cc8cb3c4485246"
    )  # as computed before the field
