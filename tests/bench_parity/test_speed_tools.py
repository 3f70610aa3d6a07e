"""The commands bench/speed.py and bench/parity.py build, and bench/profile_eval.py's grouping."""

from pathlib import Path

import pytest

from tests.bench_scripts import load_bench as load


def test_both_tools_get_the_same_shots_and_limit() -> None:
    runners = load("runners")
    ref = runners.reference_command(
        Path("/m"), "bfloat16", ["mmlu_anatomy"], "/cfg", "8", Path("/o"), limit=20, shots=5
    )
    assert ref[ref.index("--num_fewshot") + 1] == "5"
    assert ref[ref.index("--limit") + 1] == "20"
    assert ref[ref.index("--tasks") + 1] == "ref_mmlu_anatomy"
    zero = runners.reference_command(Path("/m"), "bfloat16", ["pubmedqa"], "/cfg", "8", Path("/o"))
    assert "--num_fewshot" not in zero and "--limit" not in zero
    ours = runners.medboard_command(
        Path("/m"), "bfloat16", ["mmlu_anatomy"], Path("/o"), limit=20, extra=["--shots", "5"]
    )
    assert ours[ours.index("--shots") + 1] == "5" and ours[ours.index("--limit") + 1] == "20"


def test_a_missing_data_file_is_named_not_hidden(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    runners = load("runners")
    with pytest.raises(SystemExit, match="writing the reference's task configs failed"):
        runners.reference_configs(tmp_path / "cfg", ["medqa_4options"], tmp_path / "empty")
    assert f"missing data file {tmp_path / 'empty'}" in capfd.readouterr().err


def test_speed_options() -> None:
    speed = load("speed")
    args = speed.parse_args(
        [
            "--model",
            "m.gguf",
            "--work",
            "/tmp/w",
            "--ref-batch",
            "1, 8,auto",
            "--select-limit",
            "50",
        ]
    )
    assert args.ref_batch == ["1", "8", "auto"] and args.select_limit == 50 and args.shots == 0
    with pytest.raises(SystemExit):
        speed.parse_args(["--model", "m", "--work", "/tmp/w", "--repeats", "0"])
    assert speed.parse_args(["--model", "m", "--work", "/w", "--every", "10"]).every == 10
    for wrong in (["--every", "0"], ["--every", "5", "--limit", "20"]):
        with pytest.raises(SystemExit):
            speed.parse_args(["--model", "m", "--work", "/tmp/w", *wrong])


def test_every_nth_question_of_the_evaluated_splits(tmp_path: Path) -> None:
    from medboard.data.importer import import_path
    from medboard.data.store import DataStore

    speed = load("speed")
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
    source = tmp_path / "benchmarks"
    for dataset, split, fixture in [
        ("medmcqa", "validation", "medmcqa"),
        ("mmlu_medical", "test", "mmlu_medical"),
        ("mmlu_medical", "dev", "mmlu_medical_dev"),
    ]:
        (source / dataset).mkdir(parents=True, exist_ok=True)
        (source / dataset / f"{split}.jsonl").write_bytes(
            (fixtures / f"{fixture}.jsonl").read_bytes()
        )
    out = speed.sampled_benchmarks(source, tmp_path / "sampled", ["medmcqa", "mmlu_anatomy"], 2)

    def lines(root: Path, rel: str) -> list[str]:
        return (root / rel).read_text(encoding="utf-8").splitlines()

    for rel in ("medmcqa/validation.jsonl", "mmlu_medical/test.jsonl"):
        assert lines(out, rel) == lines(source, rel)[::2] and len(lines(out, rel)) >= 2
    assert lines(out, "mmlu_medical/dev.jsonl") == lines(source, "mmlu_medical/dev.jsonl")
    store = DataStore(tmp_path / "d")
    stored = {(i.dataset, i.split): i.count for i in import_path(out, store)}
    assert stored[("medmcqa", "validation")] == 2 and stored[("mmlu_medical", "dev")] == 4
    speed.check_sample(store, ["medmcqa", "mmlu_anatomy"], 2)
    with pytest.raises(
        SystemExit, match="--every 2: .*no records of subject 'medical_genetics'.*smaller"
    ):
        speed.check_sample(store, ["mmlu_medical_genetics"], 2)
    with pytest.raises(SystemExit, match="no evaluated split"):
        speed.sampled_benchmarks(source, tmp_path / "x", ["pubmedqa"], 2)


def test_profile_groups() -> None:
    profile = load("profile_eval")
    assert profile.group_of(("~", 0, "<built-in method torch.mm>")).startswith("matrix")
    stats = type("Stats", (), {})()
    stats.stats = {
        ("~", 0, "<built-in method torch.mm>"): (1, 1, 5.0, 5.0, {}),
        ("/x/torch/_ops.py", 874, "__call__"): (1, 1, 0.1, 3.0, {}),
    }
    rows = dict(profile.breakdown(stats, 10.0))
    assert rows[profile.ATTENTION] == 3.0 and rows["everything else"] == pytest.approx(2.0)
    name = "<built-in method cabc.kernel.kernel>"
    assert profile.group_of(("~", 0, name)).startswith("fused elementwise")
    assert profile.group_of(("/x/json/decoder.py", 1, "raw_decode")) is None
