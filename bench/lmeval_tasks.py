"""Write the reference lm-eval task configs (bench/lmeval_tasks/ref_*.yaml) for a benchmarks dir.

A task's template is bench/lmeval_tasks/ref_<task>.yaml, or, for a task lm-eval does not have,
the config its module declares (`Task.reference`). The templates hold two machine-specific
placeholders: the installed
lm_eval/tasks folder (their `include:` of lm-eval's own task YAML) and the benchmarks folder
(the normalized JSONL they read). This script fills both and writes the configs, plus the
`utils.py` their `process_docs` live in, into an output folder for `lm_eval --include_path`:

    OUT=$(python bench/lmeval_tasks.py --out /tmp/ref_tasks)   # prints the folder
    HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 lm_eval --model hf \\
        --model_args pretrained=/tmp/smollm2-hf,dtype=float32 \\
        --tasks ref_medqa_4options,ref_pubmedqa --include_path "$OUT" \\
        --batch_size 16 --log_samples --output_path /tmp/lmeval_out

The benchmarks folder is --benchmarks, else $MEDBOARD_BENCHMARKS, else ../shared/benchmarks next
to the repository.
"""

import argparse
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from string import Template

from medboard.tasks import BUILTIN_TASKS, REGISTRY

TEMPLATES = Path(__file__).resolve().parent / "lmeval_tasks"
REPO = TEMPLATES.parents[1]

# medboard task name -> reference lm-eval task name is always "ref_" + name. Every task in
# medboard's registry has a template here (ref_<task>.yaml), in the registry's order.
TASKS = BUILTIN_TASKS

_BENCHMARK_FILE = re.compile(r"\$\{MEDBOARD_BENCHMARKS\}/([^'\s]+)")
_INCLUDE = re.compile(r"\$\{LM_EVAL_TASKS\}/([^'\s]+)")


def default_benchmarks() -> Path:
    env = os.environ.get("MEDBOARD_BENCHMARKS")
    return Path(env) if env else REPO.parent / "shared" / "benchmarks"


def lm_eval_tasks_dir() -> Path:
    """The installed lm_eval/tasks folder, found without importing lm_eval (slow, noisy)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("lm-eval is not installed: pip install 'medboard[reference]'")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def template_path(task: str) -> Path:
    return TEMPLATES / f"ref_{task}.yaml"


def declared_template(task: str) -> str | None:
    """The config template a task's module declares (`Task.reference`), if it does."""
    found = REGISTRY.task(task)
    if not found.reference:
        return None
    lines = [
        f"# From {found.name}'s module (Task.reference): no lm-eval task of its own.",
        f"include: '${{LM_EVAL_TASKS}}/{found.reference['include']}'",
        f"task: ref_{found.name}",
        "tag: null",
        "dataset_path: json",
        "dataset_name: null",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: '${{MEDBOARD_BENCHMARKS}}/{found.dataset}/{found.split}.jsonl'",
        "training_split: null",
        "validation_split: null",
    ]
    for key, value in found.reference.items():
        if key != "include":
            tag = "!function " if value.startswith("utils.") else ""
            lines.append(f"{key}: {tag}{value}")
    return "\n".join(lines) + "\n"


def template_text(task: str) -> str:
    """A task's config template: bench/lmeval_tasks/ref_<task>.yaml, else its module's."""
    path = template_path(task)
    if path.exists():
        return path.read_text(encoding="utf-8")
    declared = declared_template(task) if task in TASKS else None
    if declared is None:
        raise SystemExit(f"no reference config for {task} (known: {', '.join(TASKS)})")
    return declared


def required_files(task: str) -> list[str]:
    """The benchmark files (relative to the benchmarks folder) a task's config reads."""
    return _BENCHMARK_FILE.findall(template_text(task))


def _yaml_single_quoted(value: str) -> str:
    # The placeholders sit inside '...' scalars, where the only escape is a doubled quote.
    return value.replace("'", "''")


def render(task: str, benchmarks: Path, lm_eval_tasks: Path, check_files: bool = True) -> str:
    """The filled-in config of one task (checked: its include and data files exist)."""
    text = template_text(task)
    # Fail here, with the file named, rather than deep inside lm-eval's task loading, which
    # skips a broken YAML silently and then reports the task as unknown.
    for include in _INCLUDE.findall(text):
        if not (lm_eval_tasks / include).exists():
            raise SystemExit(
                f"{task}: the installed lm-eval has no {include} (in {lm_eval_tasks}); "
                "these configs follow lm-eval 0.4.x"
            )
    if check_files:
        for rel in required_files(task):
            if not (benchmarks / rel).exists():
                raise SystemExit(f"{task}: missing data file {benchmarks / rel}")
    filled = Template(text).substitute(
        LM_EVAL_TASKS=_yaml_single_quoted(lm_eval_tasks.as_posix()),
        MEDBOARD_BENCHMARKS=_yaml_single_quoted(benchmarks.as_posix()),
    )
    return f"# Generated by bench/lmeval_tasks.py for {task}.\n" + filled


def write_configs(
    benchmarks: Path,
    out: Path | None = None,
    tasks: tuple[str, ...] = TASKS,
    check_files: bool = True,
) -> tuple[Path, list[str]]:
    """Write ref_<task>.yaml for each task, and utils.py, into `out` (default: a new temp dir).

    Returns the folder and the lm-eval task names. Nothing is written unless every task renders.
    """
    lm_eval_tasks = lm_eval_tasks_dir()
    benchmarks = benchmarks.resolve()
    configs = {
        f"ref_{task}": render(task, benchmarks, lm_eval_tasks, check_files) for task in tasks
    }
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="medboard-lmeval-tasks-"))
    out.mkdir(parents=True, exist_ok=True)
    for name, text in configs.items():
        (out / f"{name}.yaml").write_text(text, encoding="utf-8")
    # The configs' `!function utils.*` resolve next to the YAML that names them.
    shutil.copyfile(TEMPLATES / "utils.py", out / "utils.py")
    return out, list(configs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", type=Path, default=None, help="normalized benchmarks dir")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: temp)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated medboard tasks")
    args = parser.parse_args(argv)
    benchmarks = args.benchmarks or default_benchmarks()
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    out, names = write_configs(benchmarks, args.out, tasks)
    print(f"wrote {', '.join(names)} for {benchmarks}", file=sys.stderr)
    # stdout carries only the folder, so that OUT=$(python bench/lmeval_tasks.py) works.
    print(out)


if __name__ == "__main__":
    main()
