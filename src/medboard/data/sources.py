"""What the data layer needs to know of a task: where its records are, which it keeps, and
where they can be pulled from. `medboard.tasks.base.Task` satisfies `TaskSource`; the data layer
imports nothing from `medboard.tasks`."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class HubSource:
    """Where a task's data lives on the Hugging Face Hub (pinned)."""

    path: str
    name: str | None
    split: str
    revision: str
    converter: str  # name of the record converter in medboard.data.converters


class TaskSource(Protocol):
    """A task as the data layer sees it."""

    @property
    def name(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def split(self) -> str: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def expected_size(self) -> int | None: ...
    @property
    def expected_hash(self) -> str | None: ...
    @property
    def hub(self) -> HubSource | None: ...

    def select(self, records: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]: ...
