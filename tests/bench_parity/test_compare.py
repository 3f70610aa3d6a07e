"""bench/parity.py's comparison logic on synthetic samples (no model, no lm-eval run)."""

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPT = BENCH / "parity.py"
MODULES = ("parity_outputs", "parity_compare")  # what parity.py imports from bench/


@pytest.fixture(scope="module")
def parity():
    # parity.py puts bench/ on sys.path and imports its sibling modules from there; the tests
    # see the names of all three (the loading, the comparison and the CLI) as one namespace.
    saved_path = list(sys.path)
    spec = importlib.util.spec_from_file_location("bench_parity_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    names = {k: v for m in MODULES for k, v in vars(sys.modules[m]).items()}
    yield SimpleNamespace(**{**names, **vars(module)})
    for name in (spec.name, *MODULES):
        sys.modules.pop(name, None)
    sys.path[:] = saved_path


def ref_row(sid, lls, target, choices, acc, acc_norm=None, doc_id=0):
    """One line of lm-eval's --log_samples output (loglik and is_greedy as strings)."""
    row = {
        "doc_id": doc_id,
        "doc": {"id": sid},
        "target": str(target),
        "arguments": {
            f"gen_args_{i}": {"arg_0": "Question: ...\nAnswer:", "arg_1": " " + c}
            for i, c in enumerate(choices)
        },
        "filtered_resps": [[repr(x), "False"] for x in lls],
        "acc": acc,
    }
    if acc_norm is not None:
        row["acc_norm"] = acc_norm
    return row


def mb_row(parity, sid, lls, gold, choices, norm=True):
    pred, pred_norm = parity.lmeval_predictions(lls, choices)
    row = {
        "id": sid,
        "choices": choices,
        "logprobs": lls,
        "greedy": [False] * len(lls),
        "pred": pred,
        "pred_norm": pred_norm,
        "gold": gold,
        "acc": float(pred == gold),
    }
    if norm:
        row["acc_norm"] = float(pred_norm == gold)
    return row


def task_run(parity, name, rows, reference):
    make = parity.reference_sample if reference else parity.medboard_sample
    samples = {s.id: s for s in map(make, rows)}
    return parity.TaskRun(task=name, samples=samples)


def test_lmeval_predictions_ties_and_length_normalization(parity):
    # argmax: ties go to the first; acc_norm: divided by len(choice), no leading space counted
    assert parity.lmeval_predictions([-1.0, -1.0, -3.0], ["a", "b", "c"]) == (0, 0)
    assert parity.lmeval_predictions([-2.0, -3.0], ["ab", "abcdef"]) == (0, 1)
    assert parity.argmax([float("nan"), -1.0]) == 0  # numpy's argmax would say 0 too
    assert parity.top_two_gap([-1.0, -4.0, -1.5]) == pytest.approx(0.5)


def test_reference_sample_parses_strings_target_and_choices(parity):
    sample = parity.reference_sample(ref_row("q1", [-1.5, -0.5], 1, ["yes", "no"], 1.0, 1.0))
    assert sample.id == "q1"
    assert sample.logprobs == [-1.5, -0.5]
    assert sample.choices == ["yes", "no"]
    assert sample.gold == 1
    # a target given as the choice string (pubmedqa's final_decision)
    row = ref_row("q2", [-1.0, -2.0, -3.0], "maybe", ["yes", "no", "maybe"], 0.0)
    assert parity.reference_sample(row).gold == 2


def test_identical_float32_passes(parity):
    choices = ["A", "B", "C", "D"]
    lls = [[-1.0, -2.0, -3.0, -4.0], [-3.0, -0.5, -2.0, -2.5], [-2.0, -2.0, -1.0, -5.0]]
    golds = [0, 2, 2]
    ref = [
        ref_row(f"q{i}", ll, g, choices, float(parity.argmax(ll) == g), None, i)
        for i, (ll, g) in enumerate(zip(lls, golds, strict=True))
    ]
    # medboard within 1e-5 of the reference
    mb = [
        mb_row(parity, f"q{i}", [x + 1e-5 for x in ll], g, choices, norm=False)
        for i, (ll, g) in enumerate(zip(lls, golds, strict=True))
    ]
    a, b = task_run(parity, "t", ref, True), task_run(parity, "t", mb, False)
    c = parity.compare_task(a, b)
    assert c.n_matched == 3
    assert c.n_choices == 12
    assert c.max_abs_delta == pytest.approx(1e-5)
    assert c.mean_abs_delta == pytest.approx(1e-5)
    assert c.n_delta_over == 0
    assert c.acc_a == c.acc_b == pytest.approx(2 / 3)
    assert c.acc_diff_points == pytest.approx(0.0)
    assert c.agreement == 100.0
    assert not c.has_norm  # the reference reported no acc_norm
    assert c.inconsistent_a == []
    assert parity.check_task(c, "float32", 1.0) == []


def test_flip_near_tie_fails_float32_but_passes_bf16_tolerance(parity):
    choices = ["one", "three"]  # lengths 3 and 5
    n = 200
    ref, mb = [], []
    for i in range(n):
        ll = [-1.0, -2.0] if i else [-1.0, -1.0004]  # sample 0: a near tie
        # acc_norm as lm-eval computes it: q0's normalized scores -1/3 < -1.0004/5 pick 1
        ref.append(ref_row(f"q{i}", ll, 0, choices, 1.0, 1.0 if i else 0.0, i))
        mine = [-1.0005, -1.0] if i == 0 else ll  # medboard flips the near tie
        mb.append(mb_row(parity, f"q{i}", mine, 0, choices))
    a, b = task_run(parity, "t", ref, True), task_run(parity, "t", mb, False)
    c = parity.compare_task(a, b)
    assert c.max_abs_delta == pytest.approx(0.0005, rel=1e-6)  # below 1e-3: ok on its own
    assert c.n_delta_over == 0
    assert c.agree == n - 1
    assert c.agreement == pytest.approx(99.5)
    assert c.acc_diff_points == pytest.approx(-0.5)
    assert c.has_norm
    # reference norm scores of q0: -1/3 vs -1.0004/5 -> picks 1, medboard -1.0005/3 vs -1/5 -> 1
    assert c.agree_norm == n
    (d,) = c.disagreements
    assert (d.id, d.kind, d.pred_a, d.pred_b, d.gold) == ("q0", "acc", 0, 1, 0)
    assert d.gap == pytest.approx(0.0004)
    failures = parity.check_task(c, "float32", 1.0)
    assert len(failures) == 1 and failures[0].startswith("acc differs by -0.50")
    assert parity.check_task(c, "lowp", 1.0) == []
    assert parity.check_task(c, "lowp", 0.4) != []


def test_exactly_the_tolerance_passes(parity):
    # one answer of 100 moved is 1.0000000000000009 points in floating point: "at most 1" holds
    choices = ["A", "B"]

    def runs(flips):
        ref = [ref_row(f"q{i}", [-1.0, -2.0], 0, choices, 1.0, None, i) for i in range(100)]
        mb = [
            mb_row(parity, f"q{i}", [-2.0, -1.0] if i < flips else [-1.0, -2.0], 0, choices)
            for i in range(100)
        ]
        a, b = task_run(parity, "t", ref, True), task_run(parity, "t", mb, False)
        return parity.compare_task(a, b)

    one = runs(1)
    assert abs(one.acc_diff_points) > 1.0  # the rounding this guards against
    assert parity.check_task(one, "lowp", 1.0) == []
    assert parity.check_task(runs(2), "lowp", 1.0) != []


def test_large_delta_missing_samples_and_gold_mismatch(parity):
    choices = ["A", "B"]
    ref = [
        ref_row("q0", [-1.0, -2.0], 0, choices, 1.0, 1.0, 0),
        ref_row("q1", [-1.0, -2.0], 0, choices, 1.0, 1.0, 1),
        ref_row("q2", [-1.0, -2.0], 0, choices, 1.0, 1.0, 2),
    ]
    mb = [
        mb_row(parity, "q0", [-1.01, -2.0], 0, choices),  # |delta| 1e-2
        mb_row(parity, "q1", [-1.0, -2.0], 1, choices),  # another gold
        mb_row(parity, "q9", [-1.0, -2.0], 0, choices),  # not in the reference
    ]
    c = parity.compare_task(task_run(parity, "t", ref, True), task_run(parity, "t", mb, False))
    assert c.n_matched == 2
    assert c.only_a == ["q2"] and c.only_b == ["q9"]
    assert c.n_delta_over == 1
    assert c.max_abs_delta == pytest.approx(0.01)
    assert c.gold_mismatch == ["q1"]
    text = " ".join(parity.check_task(c, "float32", 1.0))
    assert "samples differ" in text and "max |delta loglik|" in text and "gold" in text


def test_inconsistent_reference_acc_norm_is_flagged(parity):
    # With medboard's choices the length-normalized argmax is the gold answer (-2/11 > -1.5/1),
    # but lm-eval logged acc_norm 0: the tools' choice strings differ, which must be flagged.
    ref = [ref_row("q0", [-2.0, -1.5], 0, ["x", "b"], acc=0.0, acc_norm=0.0)]
    mb = [mb_row(parity, "q0", [-2.0, -1.5], 0, ["long answer", "b"])]
    c = parity.compare_task(task_run(parity, "t", ref, True), task_run(parity, "t", mb, False))
    assert c.inconsistent_a == ["q0"]
    assert any("recomputed" in f for f in parity.check_task(c, "float32", 1.0))


def test_compare_outputs_on_disk_with_report_and_exit_code(parity, tmp_path, capsys):
    choices = ["A", "B", "C"]
    ref_dir = tmp_path / "ref" / "__models__tiny"
    ref_dir.mkdir(parents=True)
    stamp = "2026-01-01T00-00-00.000001"
    rows = [ref_row(f"q{i}", [-1.0, -2.0 - i, -3.0], 0, choices, 1.0, 1.0, i) for i in range(3)]
    (ref_dir / f"samples_ref_medqa_4options_{stamp}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    (ref_dir / f"results_{stamp}.json").write_text(
        json.dumps(
            {
                "results": {"ref_medqa_4options": {"acc,none": 1.0, "acc_norm,none": 1.0}},
                "n-samples": {"ref_medqa_4options": {"effective": 3}},
                "config": {"model_args": "pretrained=/m,dtype=float32"},
            }
        )
    )
    mb_dir = tmp_path / "mb"
    mb_dir.mkdir()
    mb_rows = [mb_row(parity, f"q{i}", [-1.0, -2.0 - i, -3.0], 0, choices) for i in range(3)]
    (mb_dir / "samples_medqa_4options.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in mb_rows)
    )
    (mb_dir / "results.json").write_text(
        json.dumps(
            {
                "model": {"dtype": "float32"},
                "results": {"medqa_4options": {"n": 3, "acc": 1.0, "acc_norm": 1.0}},
            }
        )
    )
    report = tmp_path / "report.json"
    args = ["--ref-dir", str(tmp_path / "ref"), "--medboard-dir", str(mb_dir)]
    assert parity.main([*args, "--report", str(report), "--check"]) == 0
    out = capsys.readouterr().out
    assert "| medqa_4options | 3 |" in out and "**total (1 tasks)**" in out
    data = json.loads(report.read_text())
    assert data["ok"] and data["criteria"] == "float32"
    assert data["tasks"]["medqa_4options"]["max_abs_delta"] == 0.0

    # one medboard log-likelihood off by 0.01: --check fails, without --check the exit is 0
    mb_rows[1]["logprobs"][2] -= 0.01
    (mb_dir / "samples_medqa_4options.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in mb_rows)
    )
    assert parity.main([*args, "--check"]) == 1
    assert parity.main(args) == 0
    # the same output read as bfloat16: only the acc difference counts
    assert parity.main([*args, "--check", "--dtype", "bfloat16"]) == 0
    # reference against itself
    assert (
        parity.main(
            ["--ref-dir", str(tmp_path / "ref"), "--ref-dir-b", str(tmp_path / "ref"), "--check"]
        )
        == 0
    )
    assert "acc A" in capsys.readouterr().out
