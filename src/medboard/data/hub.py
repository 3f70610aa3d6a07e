"""Pull a task's data from the Hugging Face Hub (pinned revision) into the dataset store.

The pull is `datasets.load_dataset(path, name, split=..., revision=...)` without remote code,
then the task's converter (medboard.data.converters). A local `source` (a `save_to_disk`
folder, a folder of parquet/json files, or one such file) goes through the same loading call
and the same converter: that is how the pull is tested offline, and how a copy of the Hub files
fetched on another machine is used.
"""

from pathlib import Path
from typing import Any

from medboard.data.converters import CONVERTERS
from medboard.data.formats import Group
from medboard.data.hub_files import dataset_rows, import_or_explain, is_saved_dataset
from medboard.data.importer import store_groups
from medboard.data.sources import HubSource, TaskSource
from medboard.data.store import DataStore, SplitInfo
from medboard.errors import DataError, HubUnreachableError

# Exception class names (anywhere in the cause chain) that mean "no network" rather than "no
# such dataset": datasets wraps them all in a builtin ConnectionError today, but requests,
# httpx, urllib3 and huggingface_hub each have their own, and the wrapping has changed before.
_UNREACHABLE = {
    "ConnectionError",
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "Timeout",
    "TimeoutError",
    "TimeoutException",
    "MaxRetryError",
    "NameResolutionError",
    "OfflineModeIsEnabled",
    "LocalEntryNotFoundError",
}

_LOCAL_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def hub_id(hub: HubSource) -> str:
    return hub.path + (f" ({hub.name})" if hub.name else "")


def _unreachable(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(cls.__name__ in _UNREACHABLE for cls in type(current).__mro__):
            return True
        current = current.__cause__ or current.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _load_from_hub(hub: HubSource, revision: str, cache_dir: Path | None) -> Any:
    datasets = import_or_explain("datasets")
    try:
        return datasets.load_dataset(
            hub.path,
            hub.name,
            split=hub.split,
            revision=revision,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
    except Exception as exc:  # datasets raises many types; sort them into two user errors
        if _unreachable(exc):
            raise HubUnreachableError(
                f"cannot reach the Hugging Face Hub to pull {hub_id(hub)} (offline or no "
                "network): get its files another way and run 'medboard data import PATH'"
            ) from None
        raise DataError(
            f"cannot load {hub_id(hub)} at revision {revision} from the Hub ({_first_line(exc)})"
        ) from None


def _load_from_source(hub: HubSource, source: Path, cache_dir: Path | None) -> Any:
    """The task's split from a local copy, by the same `datasets` loading calls as the Hub."""
    datasets = import_or_explain("datasets")
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    try:
        if is_saved_dataset(source):
            loaded = datasets.load_from_disk(str(source))
            if isinstance(loaded, datasets.DatasetDict):
                if hub.split not in loaded:
                    raise DataError(f"{source}: no split '{hub.split}' (has {', '.join(loaded)})")
                return loaded[hub.split]
            return loaded
        cache = str(cache_dir) if cache_dir else None
        if source.is_file():
            builder = _LOCAL_BUILDERS.get(source.suffix.lower())
            if builder is None:
                raise DataError(f"{source}: not a parquet, json or csv file")
            return datasets.load_dataset(
                builder, data_files={hub.split: str(source)}, split=hub.split, cache_dir=cache
            )
        # A snapshot of the Hub repository declares its configs in README.md, as on the Hub;
        # a bare copy keeps each config in a folder of its name (cais/mmlu: anatomy/test-*).
        readme = source / "README.md"
        if hub.name and readme.is_file() and "config_name:" in readme.read_text(encoding="utf-8"):
            kwargs: dict[str, Any] = {"name": hub.name}
        elif hub.name and (source / hub.name).is_dir():
            kwargs = {"data_dir": hub.name}
        else:
            kwargs = {}
        return datasets.load_dataset(str(source), split=hub.split, cache_dir=cache, **kwargs)
    except DataError:
        raise
    except Exception as exc:  # as above: a damaged or foreign copy, in one line
        raise DataError(f"{source}: cannot load it as {hub_id(hub)} ({_first_line(exc)})") from None


def pull_task(
    task: TaskSource,
    store: DataStore,
    revision: str | None = None,
    source: Path | str | None = None,
    cache_dir: Path | None = None,
) -> SplitInfo:
    """Download (or load from `source`) the task's Hub split, convert it and store it.

    Returns the stored split the task evaluates. A converter that yields more splits stores
    them too (PubMedQA's labeled config gives the test split and the train pool). An MMLU
    task pulls one subject (the Hub config), which replaces only that subject in the store.
    """
    hub = task.hub
    if hub is None:
        raise DataError(
            f"task '{task.name}' has no Hub source: "
            "import its data with 'medboard data import PATH'"
        )
    if hub.converter not in CONVERTERS:
        raise DataError(f"task '{task.name}' names an unknown converter '{hub.converter}'")
    if source is not None and revision is not None:
        raise DataError("a revision applies to the Hub, not to a local source")
    rev = revision or hub.revision
    if source is None:
        loaded = _load_from_hub(hub, rev, cache_dir)
        where, fmt = f"hf://datasets/{hub.path}@{rev}", "hub"
    else:
        loaded = _load_from_source(hub, Path(source), cache_dir)
        where, fmt = str(source), "hub_copy"
    where += f" [{hub.name + ', ' if hub.name else ''}{hub.split}]"
    converted = CONVERTERS[hub.converter](dataset_rows(loaded), hub.split)
    groups = []
    for split, records in converted.items():
        if task.subject is not None:
            # One task per MMLU subject: keep its subject even if the source holds several.
            records = [r for r in records if r.get("subject") == task.subject]
        if records:
            groups.append(
                Group(
                    task.dataset,
                    split,
                    records,
                    where,
                    f"{fmt}/{hub.converter}",
                    merge_subjects=task.subject is not None,
                )
            )
    if not any(g.split == task.split for g in groups):
        subject = f" of subject '{task.subject}'" if task.subject else ""
        raise DataError(f"{where}: no records{subject} for the '{task.split}' split of {task.name}")
    infos = store_groups(groups, store, where)
    return next(info for info in infos if info.split == task.split)
