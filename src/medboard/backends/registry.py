"""The backends medboard evaluates with, by name: its own and those other packages register.

A backend is one module with a `Provider` (what the queue and the command line need to know of
it, importing nothing heavy) and one registration: medboard's own are listed in BUILTIN, another
package's in its entry points, group `medboard.backends`:

    [project.entry-points."medboard.backends"]
    echo = "medboard_echo:PROVIDER"

A model spec's prefix picks the backend (`echo:some-model`, spec.py); `resolve` types the spec's
arguments by the backend's declaration, `create` makes the backend (its engine imported then),
`validate` checks a model before it is queued, `release` gives memory back after a job. The
queue, the federated track and the web app use this module and nothing else of `backends/`.
"""

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from medboard.backends.base import Backend, ModelInfo
from medboard.backends.spec import DEFAULT_BACKEND, Arg, ModelSpec, split_prefix
from medboard.errors import MedboardError, ModelError

GROUP = "medboard.backends"
BUILTIN = {
    "hf": "medboard.backends.hf_provider:PROVIDER",
    "fake": "medboard.backends.fake:PROVIDER",
    "openai": "medboard.backends.openai_provider:PROVIDER",
    "vllm": "medboard.backends.vllm_provider:PROVIDER",
}


class Provider(Protocol):
    """What a backend tells medboard about itself; see BackendProvider for the defaults."""

    summary: str  # one line: what it evaluates
    args: Mapping[str, Arg]  # the arguments it takes
    requires: tuple[str, ...]  # modules it imports to run
    install: str  # how to get them (shown when one is missing)
    # Whether the public (the web form, the API) may submit its models where the board's
    # operator has not listed the backends it takes (queue.public.public_backends).
    public: bool

    def create(self, spec: ModelSpec) -> Backend:
        """The backend for `spec`, ready to load its model on first use."""
        ...

    def check(self, spec: ModelSpec) -> None:
        """Fail with one line when `spec` cannot run here (a device that is missing ...)."""
        ...

    def check_run(self, args: Mapping[str, Any]) -> None:
        """Fail with one line when a worker's per-run arguments cannot run here."""
        ...

    def validate(self, spec: ModelSpec) -> ModelInfo:
        """Check the model as a submission (without evaluating it)."""
        ...

    def release(self) -> None:
        """Give memory back after a job (a worker evaluates many models in one process)."""
        ...


class BackendProvider:
    """Defaults for a Provider: nothing required, nothing to check or release, and a model
    that cannot be submitted to the queue."""

    summary = ""
    args: Mapping[str, Arg] = {}
    requires: tuple[str, ...] = ()
    install = ""
    public = True

    def create(self, spec: ModelSpec) -> Backend:
        raise NotImplementedError

    def check(self, spec: ModelSpec) -> None:
        pass

    def check_run(self, args: Mapping[str, Any]) -> None:
        pass

    def validate(self, spec: ModelSpec) -> ModelInfo:
        raise ModelError(f"backend {spec.backend} takes no submissions")

    def release(self) -> None:
        pass


@dataclass(frozen=True)
class Registration:
    name: str
    target: str  # "module:attribute"
    origin: str  # "medboard", or the package that registered it


@cache
def registrations() -> dict[str, Registration]:
    """Every backend by name: medboard's, then the entry points' (a name taken twice fails)."""
    found = {name: Registration(name, target, "medboard") for name, target in BUILTIN.items()}
    for point in importlib.metadata.entry_points(group=GROUP):
        origin = point.dist.name if point.dist is not None else point.value
        if point.name in found:
            taken = found[point.name].origin
            raise MedboardError(
                f"two backends are named '{point.name}': {taken}'s and {origin}'s "
                f"(entry point group {GROUP})"
            )
        found[point.name] = Registration(point.name, point.value, origin)
    return found


def known() -> list[str]:
    return sorted(registrations())


_LOADED: dict[str, Provider] = {}  # the providers this process has loaded, by name


def provider(name: str) -> Provider:
    """The named backend's provider (its module imported; its engine not yet)."""
    if name in _LOADED:
        return _LOADED[name]
    registration = registrations().get(name)
    if registration is None:
        raise ModelError(f"unknown backend '{name}' (known: {', '.join(known())})")
    module, _, attribute = registration.target.partition(":")
    try:
        loaded: Any = importlib.import_module(module)
        for part in filter(None, attribute.split(".")):
            loaded = getattr(loaded, part)
    except (ImportError, AttributeError) as exc:
        raise ModelError(
            f"backend {name} ({registration.origin}) does not load: {registration.target}: {exc}"
        ) from None
    _LOADED[name] = loaded
    return loaded


def _require(name: str, chosen: Provider) -> None:
    """One line naming what to install when a module the backend runs on is missing."""
    for module in chosen.requires:
        if importlib.util.find_spec(module) is None:
            raise ModelError(
                f"backend {name} needs the package '{module}': {chosen.install or 'install it'}"
            )


def resolve(
    text: str, args: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None
) -> ModelSpec:
    """The spec `text` names with `args` (text or typed values), checked against what its
    backend takes; `defaults` fill arguments the backend takes that are not given (a command's
    own defaults, e.g. bfloat16 for submissions)."""
    prefix, model = split_prefix(text.strip())
    name = prefix or DEFAULT_BACKEND
    chosen = provider(name)
    if name == DEFAULT_BACKEND and not model.strip():
        raise ModelError("no model given")
    given = dict(args or {})
    unknown = sorted(set(given) - set(chosen.args))
    if unknown:
        accepted = ", ".join(sorted(chosen.args)) or "none"
        raise ModelError(f"backend {name} takes no argument '{unknown[0]}' (it takes: {accepted})")
    typed = {
        key: chosen.args[key].parse(name, key, value)
        for key, value in given.items()
        if value is not None and value != ""
    }
    for key, value in (defaults or {}).items():
        if key in chosen.args and key not in typed and value is not None:
            typed[key] = chosen.args[key].parse(name, key, value)
    return ModelSpec.of(name, model, typed)


def create(spec: ModelSpec) -> Backend:
    """The backend for a resolved spec; one line when its packages or its device are missing."""
    chosen = provider(spec.backend)
    _require(spec.backend, chosen)
    chosen.check(spec)
    return chosen.create(spec)


def check(spec: ModelSpec) -> None:
    """What `create` checks, without creating anything: fails before any work is queued."""
    chosen = provider(spec.backend)
    _require(spec.backend, chosen)
    chosen.check(spec)


def validate(spec: ModelSpec) -> ModelInfo:
    """Check a model as a submission: it loads as its backend needs, nothing is evaluated."""
    chosen = provider(spec.backend)
    _require(spec.backend, chosen)
    return chosen.validate(spec)


def per_run_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments a worker sets for every job it runs (-M, --device): each must be a `per_run`
    argument of some backend, of the right type, and runnable here (each backend that takes
    some of them checks those: a cuda device that is not there fails now, before any job is
    taken). A job's backend takes those it declares (`for_job`)."""
    declared: dict[str, bool] = {}
    for name in known():
        try:
            chosen = provider(name)
        except MedboardError:  # a backend that does not load says so when a job needs it
            continue
        for key, arg in chosen.args.items():
            declared[key] = declared.get(key, False) or arg.per_run
        taken = {k: chosen.args[k].parse(name, k, v) for k, v in args.items() if k in chosen.args}
        if taken and all(chosen.args[k].per_run for k in taken):
            chosen.check_run(taken)
    for key in args:
        if key not in declared:
            raise ModelError(f"no backend takes an argument '{key}' (-M {key}=...)")
        if not declared[key]:
            raise ModelError(
                f"-M {key} says which model is evaluated: it is the submission's, not the worker's"
            )
    return dict(args)


def for_job(spec: ModelSpec, worker_args: Mapping[str, str]) -> ModelSpec:
    """A job's spec with the worker's per-run arguments that its backend takes."""
    args = provider(spec.backend).args
    taken = {
        key: args[key].parse(spec.backend, key, value)
        for key, value in worker_args.items()
        if key in args and args[key].per_run
    }
    return spec.with_args(taken) if taken else spec


def release() -> None:
    """Every backend this process loaded gives memory back (after a worker's job)."""
    for chosen in _LOADED.values():
        chosen.release()
