"""User-facing errors: each carries one line that names the problem.

The CLI prints the message of a MedboardError without a traceback and exits non-zero; any other
exception is a bug and keeps its traceback.
"""


class MedboardError(Exception):
    """An error caused by input (a task name, a file, a model) rather than by a bug."""


class DataError(MedboardError):
    """Missing, corrupt or mismatching evaluation data."""


class ModelError(MedboardError):
    """A model, tokenizer or adapter that cannot be used."""


class TransientError(MedboardError):
    """A failure that may pass by itself (a model server down or restarting, after the retries
    of its requests): the queue puts the job back to wait and tries it again later."""


class MissingExtraError(MedboardError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"this needs the package '{package}': pip install 'medboard[{extra}]'")


class HubUnreachableError(MedboardError):
    """The model or dataset hub cannot be reached (offline, or no network)."""


class HubUnavailableError(HubUnreachableError, TransientError):
    """The hub did not answer now (no connection, a timeout, 429 or 5xx) while online: a queued
    job waits and is tried again, as for a model server that is down."""


class SubmissionError(MedboardError):
    """A submission that cannot be queued (invalid model, duplicate, rate limit)."""


class DuplicateSubmissionError(SubmissionError):
    """The same model, revision, precision and adapter is queued or evaluated already."""

    def __init__(self, message: str, submission_id: int, entry_id: int | None) -> None:
        super().__init__(message)
        self.submission_id = submission_id
        self.entry_id = entry_id
