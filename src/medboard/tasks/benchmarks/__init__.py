"""One module per benchmark: its tasks (definition, prompt, language, license, tracks).

Each module here defines `TASKS`, a tuple of `medboard.tasks.base.Task`; `discover()` imports
every module of this package, in name order, and returns their tasks. Adding a benchmark is
adding a module (and its golden prompts, tests/tasks/golden/<task>.json): nothing else names it.
"""

import importlib
import pkgutil

from medboard.tasks.base import Task


def discover() -> list[Task]:
    """The tasks of every benchmark module of this package, module by module in name order."""
    found: list[Task] = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        imported = importlib.import_module(f"{__name__}.{module.name}")
        tasks = getattr(imported, "TASKS", None)
        if not isinstance(tasks, tuple) or not all(isinstance(t, Task) for t in tasks):
            raise TypeError(f"{imported.__name__} must define TASKS, a tuple of Task")
        found.extend(tasks)
    return found
