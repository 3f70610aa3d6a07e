"""The hashes that tie a run folder to what its server wrote, and the tamper check of submission.

The ServerApp records in run.json, once the run has finished, the sha256 of `comm_report.json`
(its bytes) and the hash of `adapter/` (`hash_dir`: every file but Markdown, as the backends hash
an adapter, so it equals the entry's `adapter_hash`). `medboard fl submit` recomputes both and
refuses a run whose report or adapter no longer matches: edited, replaced or truncated after the
run. This catches a run folder changed by hand or by accident, not a forger who rewrites run.json
too; the worker checks the adapter again before it scores it (queue.worker), so the adapter that
is scored is the one that was checked.
"""

from pathlib import Path
from typing import Any

from medboard.errors import SubmissionError
from medboard.federated.data import file_sha256

HASHES_KEY = "hashes"
REPORT_KEY = "comm_report_sha256"
ADAPTER_KEY = "adapter_hash"


def adapter_hash(adapter: Path) -> str:
    """The adapter folder's hash, as the backends compute it (hf_loading.hash_dir)."""
    from medboard.backends.hf_loading import hash_dir

    return hash_dir(adapter)


def run_hashes(report: Path, adapter: Path) -> dict[str, str]:
    """What run.json records under `hashes` once the report and the adapter are written."""
    return {REPORT_KEY: file_sha256(report), ADAPTER_KEY: adapter_hash(adapter)}


def check_hashes(folder: Path, state: dict[str, Any], report: Path, adapter: Path) -> str:
    """Refuse a run whose report or adapter differs from the hashes its run.json records;
    returns the adapter's hash."""
    recorded = state.get(HASHES_KEY)
    if not isinstance(recorded, dict) or not {REPORT_KEY, ADAPTER_KEY} <= set(recorded):
        raise SubmissionError(
            f"{folder / 'run.json'} records no hashes of its report and adapter (a run made "
            "before medboard recorded them): run it again"
        )
    if file_sha256(report) != recorded[REPORT_KEY]:
        raise SubmissionError(
            f"{report} does not match the sha256 that run.json records: the report was changed "
            "after the run"
        )
    found = adapter_hash(adapter)
    if found != recorded[ADAPTER_KEY]:
        raise SubmissionError(
            f"{adapter} does not match the hash that run.json records: the adapter was changed "
            "after the run"
        )
    return found
