"""The resolver: walks a model's chain of backends, loading and running with fallback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from muai_core.backend import Backend
from muai_core.contracts import Attempt, LoadRequest
from muai_core.errors import (
    BackendError,
    BackendInitializationError,
    ConfigurationError,
    InferenceError,
    InvalidInputError,
    ModelLoadError,
    PartialGeneration,
    ResourceExhausted,
    UnsupportedRequest,
)
from muai_core.inventory import close_names, model_names
from muai_core.model_source import ModelSource
from muai_core.monitor import FallbackEvent, PerformanceMonitor
from muai_core.plugins import KNOWN_BACKENDS, PluginRegistry

log = logging.getLogger("muai_core.fallback")

R = TypeVar("R")


class CallerError(Exception):
    """Carries an exception raised by the caller's own code (e.g. a streamer) through the resolver untouched."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


#: Errors that are not a backend's failure (the caller's, or a full queue): they never trigger a fallback.
USER_ERRORS = (InvalidInputError, ConfigurationError, CallerError, ResourceExhausted)


@dataclass(frozen=True)
class LoadPlan:
    """How to load one model: its source, the chain of backends to try and each backend's settings."""

    model_name: str
    model_type: str
    source: ModelSource
    chain: tuple[str, ...]
    device: str
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def settings_for(self, backend: str) -> Mapping[str, Any]:
        return self.settings.get(backend, {})

    def fallback_enabled(self, backend: str) -> bool:
        return bool(self.settings_for(backend).get("enable_fallback", True))

    def after(self, backend: str) -> tuple[str, ...]:
        return self.chain[self.chain.index(backend) + 1 :]


@dataclass(frozen=True)
class LoadedModel:
    """A model held by one backend, with the record of how it got there.

    ``helpers`` hold the same model on later backends of the chain, loaded for calls this backend said it
    cannot serve (``UnsupportedRequest``); ``detours`` record those calls, once per backend, stage and reason.
    Both live as long as this model; releasing it releases its helpers.
    """

    plan: LoadPlan
    backend: Backend
    handle: Any
    attempts: tuple[Attempt, ...]
    load_seconds: float
    helpers: dict[str, LoadedModel] = field(default_factory=dict, compare=False, repr=False)
    detours: list[Attempt] = field(default_factory=list, compare=False, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.plan.model_name

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def is_fallback(self) -> bool:
        return self.backend.name != self.plan.chain[0]

    def memory_bytes(self) -> int:
        """What the backend says the model (and its helpers) hold (``memory_bytes`` in their info); 0 if unsaid."""
        size = self.backend.info(self.handle).get("memory_bytes")
        own = size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0
        return own + sum(helper.memory_bytes() for helper in list(self.helpers.values()))

    def note(self, attempt: Attempt) -> None:
        """Add a detour to ``detours`` unless the same backend, stage, outcome and reason is there already."""
        key = (attempt.backend, attempt.stage, attempt.outcome, attempt.reason)
        with self.lock:
            if key not in {(a.backend, a.stage, a.outcome, a.reason) for a in self.detours}:
                self.detours.append(attempt)

    def metadata(self) -> dict[str, Any]:
        """The design's BackendMetadata, as a dict."""
        info = self.backend.info(self.handle)
        return {
            "backend_type": self.backend.name,
            "device": info.get("device"),
            "is_fallback": self.is_fallback,
            "load_time": self.load_seconds,
            "model_info": info,
        }


class Resolver:
    """Loads a plan on the first backend of its chain that can serve it, and hands over on failure."""

    def __init__(self, registry: PluginRegistry, monitor: PerformanceMonitor) -> None:
        self.registry = registry
        self.monitor = monitor

    def load(self, plan: LoadPlan, *, start_after: str | None = None, history: tuple[Attempt, ...] = ()) -> LoadedModel:
        """Load on the first backend of the chain (after ``start_after``) that can; ``history`` is carried along.

        The warnings of the backends passed over are logged once one loads: when none does, the error alone
        names each failure.
        """
        attempts = list(history)
        chain = plan.after(start_after) if start_after else plan.chain
        command = None if plan.source.is_local else self.registry.known_models().get(plan.model_name)
        if command is not None:  # a model a plugin fetches by name: no backend can have it before that
            raise ModelLoadError(
                f"model '{plan.model_name}' is not installed (looked in {', '.join(plan.source.searched)})",
                hint=f"get it with: {command}",
            )
        warnings: list[str] = []
        for position, name in enumerate(chain):
            started = time.perf_counter()
            try:
                backend, handle = self._load_on(name, plan)
            except USER_ERRORS:
                raise
            except Exception as exc:
                attempts.append(Attempt(name, "load", _outcome(exc), _reason(exc), time.perf_counter() - started))
                following = chain[position + 1 : position + 2]
                if not plan.fallback_enabled(name):
                    _raise_wrapped(
                        exc, ModelLoadError, f"backend '{name}' could not load '{plan.model_name}'", _NO_FALLBACK
                    )
                if not following and len(attempts) == 1 and plan.source.found:
                    _raise_wrapped(
                        exc, ModelLoadError, f"backend '{name}' could not load '{plan.model_name}'", _CHAIN_END
                    )
                if not following:
                    raise ModelLoadError(
                        f"{_opening(plan, attempts)}: {_summary(attempts)}", hint=self._next_step(plan)
                    ) from exc
                warnings.append(self._fall_back(plan.model_name, name, following[0], "load", exc))
                continue
            seconds = time.perf_counter() - started
            attempts.append(Attempt(name, "load", "ok", "", seconds))
            self.monitor.record_load(name, plan.model_name, seconds)
            for warning in warnings:
                log.warning("%s", warning)
            return LoadedModel(plan, backend, handle, tuple(attempts), seconds)
        raise ModelLoadError(f"no backend to try for '{plan.model_name}'", hint="check backend.priority in the config")

    def run(
        self,
        loaded: LoadedModel,
        stage: str,
        operation: Callable[[LoadedModel], R],
        retire: Callable[[LoadedModel], None] | None = None,
        replace: Callable[[LoadedModel, Callable[[], LoadedModel]], LoadedModel] | None = None,
        lease: Callable[[LoadedModel], None] | None = None,
    ) -> tuple[R, LoadedModel]:
        """Run ``operation``; on a backend failure, reload on the next backend and run it there.

        The failed model goes to ``retire`` (default: unloaded at once), which may wait for other users; the
        model to run on next comes from ``replace(failed, load)`` (default: ``load()``, the reload on the next
        backend), which may hand out one already loaded in its place. A failed reload raises, the failed model
        retired all the same. A call the backend cannot serve (``UnsupportedRequest``) runs on a helper (see
        ``LoadedModel``) instead, handed to ``lease`` before it runs; the model stays where it is.
        """
        retire = retire or self.release
        while True:
            try:
                return operation(loaded), loaded
            except USER_ERRORS:
                raise
            except UnsupportedRequest as exc:
                return self._detour(loaded, stage, operation, exc, retire, lease or (lambda helper: None)), loaded
            except Exception as raised:
                exc = engine_error(raised)
                name = loaded.backend_name
                following = _next_backend(loaded.plan, name, stage, exc)
                retire(loaded)
                warning = self._fall_back(loaded.name, name, following, stage, exc)
                failure = Attempt(name, stage, "failed", _reason(exc))
                plan, history = loaded.plan, (*loaded.attempts, failure)
                load = lambda: self.load(plan, start_after=name, history=history)  # noqa: B023, E731
                loaded = load() if replace is None else replace(loaded, load)
                log.warning("%s", warning)

    def _detour(
        self,
        primary: LoadedModel,
        stage: str,
        operation: Callable[[LoadedModel], R],
        exc: Exception,
        retire: Callable[[LoadedModel], None],
        lease: Callable[[LoadedModel], None],
    ) -> R:
        """Run one call that ``primary``'s backend cannot serve on the next backend of the chain that can.

        A helper that fails is dropped (``retire``) and the call goes on past it; the chain's end, or a
        backend with fallback disabled, raises the last error.
        """
        current = primary
        while True:
            name = current.backend_name
            following = _next_backend(primary.plan, name, stage, exc)
            unsupported = isinstance(exc, UnsupportedRequest)
            primary.note(Attempt(name, stage, "unsupported" if unsupported else "failed", _reason(exc)))
            if not unsupported:
                with primary.lock:
                    primary.helpers.pop(name, None)
                retire(current)
            self.monitor.record_detour(FallbackEvent(primary.name, name, following, stage, _reason(exc)))
            helper = self._helper(primary, current, lease)
            log.info("muai: %s of '%s' runs on %s: %s", stage, primary.name, helper.backend_name, _reason(exc))
            try:
                return operation(helper)
            except USER_ERRORS:
                raise
            except Exception as raised:
                current, exc = helper, engine_error(raised)

    def _helper(self, primary: LoadedModel, after: LoadedModel, lease: Callable[[LoadedModel], None]) -> LoadedModel:
        """The helper of ``primary`` on the first backend after ``after``'s that holds or loads the model,
        leased before ``primary``'s lock is let go (so no other request can retire it in between)."""
        with primary.lock:
            helper = next(
                (primary.helpers[n] for n in primary.plan.after(after.backend_name) if n in primary.helpers), None
            )
            if helper is None:
                helper = self.load(primary.plan, start_after=after.backend_name)
                primary.helpers[helper.backend_name] = helper
            lease(helper)
            return helper

    def _next_step(self, plan: LoadPlan) -> str:
        """The hint after every backend failed: details for a model that exists, what exists for one that does not."""
        if plan.source.found:
            return f"run `muai explain {plan.model_name}` for details"
        installed = sorted({name for root in plan.source.searched for name in model_names(Path(root))})
        catalogue = self.registry.known_models()
        known = [f"{name} ({command})" for name, command in sorted(catalogue.items())]
        close = close_names(plan.model_name, [*installed, *catalogue])
        offers = [f"installed: {', '.join(installed)}" if installed else "no model is installed (`muai models`)"]
        offers += [f"fetch by name: {', '.join(known)}"] if known else []
        offers += ["or pass a model directory, or a hub id on a machine that reaches the hub"]
        guess = f"did you mean {' or '.join(close)}? " if close else ""
        return guess + "; ".join(offers) + f". `muai explain {plan.model_name}` shows each attempt"

    def release(self, loaded: LoadedModel) -> None:
        """Unload through the owning backend, then its helpers; a failing unload is logged, never raised."""
        try:
            loaded.backend.unload(loaded.handle)
        except Exception as exc:
            log.warning("muai: backend '%s' failed to unload '%s': %s", loaded.backend_name, loaded.name, exc)
        with loaded.lock:
            helpers = list(loaded.helpers.values())
            loaded.helpers.clear()
        for helper in helpers:
            self.release(helper)

    def _load_on(self, name: str, plan: LoadPlan) -> tuple[Backend, Any]:
        if name not in self.registry.backend_names():
            left_out = self.registry.left_out_error(name)
            if left_out is not None:
                raise _Unavailable(left_out.message, hint=left_out.raw_hint)
            hint = KNOWN_BACKENDS.get(name, "install the plugin that provides it")
            raise _NotInstalled(f"backend '{name}' is not installed", hint=hint)
        backend = self.registry.backend(name)
        availability = backend.available()
        if not availability.available:
            raise _Unavailable(f"backend '{name}' is unavailable: {availability.reason}")
        settings = plan.settings_for(name)
        request = LoadRequest(
            model_name=plan.model_name,
            model_type=plan.model_type,
            source=plan.source.source,
            is_local=plan.source.is_local,
            device=str(settings.get("device", plan.device)),
            settings=settings,
            paths=plan.source.paths,
            models_dir=plan.source.models_dir,
        )
        return backend, backend.load(request)

    def _fall_back(self, model: str, failed: str, following: str, stage: str, exc: BaseException) -> str:
        """Record the hand-over in the monitor; returns the warning to log once the next backend has loaded."""
        reason = _reason(exc)
        self.monitor.record_fallback(FallbackEvent(model, failed, following, stage, reason))
        return f"muai: '{model}' failed on {failed} during {stage} ({reason}); falling back to {following}"


class _NotInstalled(BackendInitializationError):
    pass


class _Unavailable(BackendInitializationError):
    pass


def engine_error(exc: Exception) -> Exception:
    """The error to report and wrap: a ``PartialGeneration``'s cause, the engine's own error."""
    cause = exc.__cause__
    return cause if isinstance(exc, PartialGeneration) and isinstance(cause, Exception) else exc


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, _NotInstalled):
        return "not installed"
    return "unavailable" if isinstance(exc, _Unavailable) else "failed"


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"


def _summary(attempts: list[Attempt]) -> str:
    """Each backend's failure once; a backend that loaded and then failed to run says so."""
    return "; ".join(
        f"{a.backend}: {a.outcome} ({a.reason})"
        if a.stage == "load"
        else f"{a.backend}: loaded, then failed to {a.stage} ({a.reason})"
        for a in attempts
        if a.outcome != "ok"
    )


def _opening(plan: LoadPlan, attempts: list[Attempt]) -> str:
    """What failed: a model that no backend loaded and that has no local directory at all is "not found"."""
    source = plan.source
    if any(a.outcome == "ok" for a in attempts):
        return f"no backend could run '{plan.model_name}'"
    if source.found:
        return f"no backend could load '{plan.model_name}'"
    if source.is_local:
        where = f"{source.source} does not exist"
    else:
        where = f"no directory of that name here or in {', '.join(source.searched) or 'the models directory'}"
    return f"model '{plan.model_name}' not found locally ({where}), and no backend could load it"


_NO_FALLBACK = "fallback is disabled for this backend (enable_fallback: false)"
_CHAIN_END = "no backend is left in the chain; add one to backend.priority to fall back to"


def _next_backend(plan: LoadPlan, failed: str, stage: str, exc: Exception) -> str:
    """The backend after ``failed`` in ``plan``'s chain; ``exc``, wrapped, when fallback is off or none is left."""
    following = plan.after(failed)
    message = f"backend '{failed}' failed to {stage} with '{plan.model_name}'"
    if not plan.fallback_enabled(failed):
        _raise_wrapped(exc, InferenceError, message, _NO_FALLBACK)
    if not following:
        _raise_wrapped(exc, InferenceError, message, _CHAIN_END)
    return following[0]


def _raise_wrapped(exc: BaseException, error_type: type[BackendError], message: str, hint: str) -> NoReturn:
    """Our own errors pass through unchanged; anything else is wrapped with context, chained as cause."""
    if isinstance(exc, BackendError):
        raise exc
    raise error_type(f"{message}: {type(exc).__name__}: {exc}", hint=hint) from exc
