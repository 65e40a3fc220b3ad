"""ModelManager: the design's facade over plugins, resolver, model cache, config and monitor."""

from __future__ import annotations

import atexit
import copy
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, overload

from muai_core.cache import LRUCache
from muai_core.config import MuaiConfig, load_config, parse_size
from muai_core.contracts import Attempt, GenerationRequest, GenerationResult, Streamer
from muai_core.draft_models import Drafts
from muai_core.errors import ConfigurationError, InferenceError, InvalidInputError, ModelLoadError, PartialGeneration
from muai_core.leases import Leases
from muai_core.model_source import resolve_model
from muai_core.monitor import PerformanceMonitor, default_monitor
from muai_core.plugins import PluginRegistry, default_registry
from muai_core.resolver import USER_ERRORS, CallerError, LoadedModel, LoadPlan, Resolver, engine_error
from muai_core.streaming import AsyncStream, Stream, call_in_thread

#: Prompts of one batch that run at once at most.
BATCH_THREADS = 32
#: Failed models whose replacement the manager remembers (requests that failed together find it there).
REMEMBERED_FAILURES = 8

BackendChoice = str | Sequence[str] | None
#: One prompt, or a batch of them (a list).
Prompts = str | list[str]
#: A conversation: ``[{"role": "system" | "user" | "assistant" | "tool", "content": "..."}, ...]``.
Messages = Sequence[Mapping[str, str]] | None


class ModelManager:
    """Loads models on pluggable backends and runs them, falling back along a priority chain.

    ``backend=None`` takes ``backend.default`` from the config, which defaults to ``pytorch``.
    ``max_cache_bytes`` (an int or text like ``"2GiB"``; default: the config's ``max_cache_bytes``, else
    none) bounds the memory the loaded models report in their info's ``memory_bytes``.
    ``backend_config`` overrides the config section of that backend. ``config_path`` defaults to
    ``$MUAI_CONFIG`` or ``config/system.yaml``; a missing file means defaults.
    """

    def __init__(
        self,
        device: str = "cpu",
        max_cached_models: int = 3,
        backend: str | None = None,
        backend_config: Mapping[str, Any] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        *,
        registry: PluginRegistry | None = None,
        monitor: PerformanceMonitor | None = None,
        max_cache_bytes: int | str | None = None,
    ) -> None:
        if not isinstance(device, str) or not device:
            raise ConfigurationError(f"device must be a device name such as 'cpu', got {device!r}")
        if isinstance(max_cached_models, bool) or not isinstance(max_cached_models, int) or max_cached_models < 1:
            raise ConfigurationError(f"max_cached_models must be an int >= 1, got {max_cached_models!r}")
        if backend_config is not None and not isinstance(backend_config, Mapping):
            raise ConfigurationError(f"backend_config must be a mapping, got {type(backend_config).__name__}")
        self.device = device
        self.max_cached_models = max_cached_models
        self.backend_config = dict(backend_config or {})
        self.config_path = config_path
        self.registry = registry or default_registry()
        self._monitor = monitor or default_monitor()
        self._backend_arg = None if backend is None else self.registry.check_backend_name(backend)
        self._config = self._checked(load_config(config_path))
        self._resolver = Resolver(self.registry, self._monitor)
        self._leases: Leases[LoadedModel] = Leases(self._resolver.release)
        if max_cache_bytes is not None:
            max_cache_bytes = parse_size(max_cache_bytes, "max_cache_bytes")
        self._cache: LRUCache[LoadedModel] = LRUCache(
            max_cached_models,
            lambda name, loaded: self._leases.retire(loaded),
            max_cache_bytes or self._config.max_cache_bytes,
        )
        self._lock = threading.RLock()
        self._loading: dict[str, threading.Lock] = {}
        self._replaced: dict[int, tuple[Any, Any]] = {}  # id(failed) -> (weak ref to it, its replacement)
        self._choices: dict[str, tuple[str, BackendChoice]] = {}  # the model_type and backend of each load_model
        self._drafts = Drafts(self)
        _LIVE_MANAGERS.add(self)

    @property
    def backend_type(self) -> str:
        """The backend models load on unless a model override or a call says otherwise."""
        return self._backend_arg or self._config.default_backend

    @property
    def config(self) -> MuaiConfig:
        return self._config

    @property
    def performance_monitor(self) -> PerformanceMonitor:
        return self._monitor

    def reload_config(self) -> MuaiConfig:
        """Re-read the config file; models loaded from now on use it. Loaded models stay as they are."""
        self._config = self._checked(load_config(self.config_path))
        return self._config

    def get_available_backends(self) -> list[str]:
        """Installed backends that report they can run on this machine."""
        return [n for n in self.registry.backend_names() if self.registry.backend(n).available().available]

    def plan(
        self, model_name: str, model_type: str = "transformers", backend_override: BackendChoice = None
    ) -> LoadPlan:
        """How ``model_name`` would be loaded: its source and its chain of backends."""
        if not isinstance(model_type, str) or not model_type:
            raise InvalidInputError(f"model_type must be text such as 'transformers', got {model_type!r}")
        chain = tuple(dict.fromkeys((*self._first_choice(model_name, backend_override), *self._config.priority)))
        settings = {name: dict(self._config.backend_settings(name)) for name in chain}
        settings.setdefault(self.backend_type, {}).update(self.backend_config)
        return LoadPlan(model_name, model_type, resolve_model(model_name, self._config), chain, self.device, settings)

    def load_model(
        self, model_name: str, model_type: str = "transformers", backend_override: BackendChoice = None
    ) -> LoadedModel:
        """Load a model (or return it from the cache); a different backend choice switches it.

        Only loads of the same model wait for each other: requests to other models go on meanwhile. A model
        evicted from the cache and loaded again by a later request comes back with this call's choices.
        """
        loaded = self._load(model_name, model_type, backend_override, lease=False)
        self._choices[model_name] = (model_type, backend_override)
        return loaded

    def _load(
        self, model_name: str, model_type: str = "transformers", backend_override: BackendChoice = None, *, lease: bool
    ) -> LoadedModel:
        """``load_model``; with ``lease`` the model is leased before any other thread could evict it."""
        plan = self.plan(model_name, model_type, backend_override)
        with self._loader(model_name):
            with self._lock:
                cached = self._cache.get(model_name)
                if cached is not None and cached.plan.chain == plan.chain and cached.plan.model_type == model_type:
                    return self._leases.acquire(cached) if lease else cached
            if cached is not None:
                self.unload_model(model_name)
            loaded = self._resolver.load(plan)  # the long part: no manager lock held
            with self._lock:
                self._check_fits(loaded)
                self._cache.put(model_name, loaded, loaded.memory_bytes())
                if lease:
                    self._leases.acquire(loaded)
            _unload_first_at_exit()
            return loaded

    def _loader(self, model_name: str) -> threading.Lock:
        """The lock that one load of ``model_name`` holds at a time (taken without holding the manager's)."""
        with self._lock:
            return self._loading.setdefault(model_name, threading.Lock())

    def get_model(self, model_name: str) -> LoadedModel:
        """The loaded model, whichever backend holds it."""
        loaded = self._cache.get(model_name)
        if loaded is None:
            raise ModelLoadError(f"model '{model_name}' is not loaded", hint=f"call load_model({model_name!r}) first")
        return loaded

    def get_model_info(self, model_name: str) -> dict[str, Any]:
        """``LoadedModel.metadata``; with a draft model, ``draft``: its name and why it was last not used (None:
        it was used)."""
        info = self.get_model(model_name).metadata()
        draft = self._drafts.status(model_name)
        if draft is not None:
            info["draft"] = draft
        return info

    def explain(self, model_name: str) -> tuple[Attempt, ...]:
        """Each backend the resolver tried for this model, with its outcome and reason; then the calls that
        ran elsewhere while the model stayed (outcome ``unsupported``), once per backend, stage and reason."""
        loaded = self.get_model(model_name)
        return (*loaded.attempts, *loaded.detours)

    def loaded_models(self) -> list[str]:
        return self._cache.keys()

    @overload
    def generate(self, model_name: str, prompt: str | None = None, max_length: int = 100, **kwargs: Any) -> str: ...
    @overload
    def generate(self, model_name: str, prompt: list[str], max_length: int = 100, **kwargs: Any) -> list[str]: ...
    def generate(
        self,
        model_name: str,
        prompt: Prompts | None = None,
        max_length: int = 100,
        *,
        messages: Messages = None,
        **kwargs: Any,
    ) -> str | list[str]:
        """Generate text; the model is loaded first if needed. See ``GenerationRequest`` for kwargs.

        A list of prompts (a batch) returns a list of texts in the same order, each what its prompt gives
        alone; every prompt is checked before any is run, then they run at once. ``messages`` (a conversation,
        in place of the prompt) goes through the model's chat template; the text is then the answer alone.
        """
        results = self.generate_result(model_name, prompt, max_length, messages=messages, **kwargs)
        return [r.text for r in results] if isinstance(results, list) else results.text

    @overload
    def generate_result(
        self, model_name: str, prompt: str | None = None, max_length: int = 100, **kwargs: Any
    ) -> GenerationResult: ...
    @overload
    def generate_result(
        self, model_name: str, prompt: list[str], max_length: int = 100, **kwargs: Any
    ) -> list[GenerationResult]: ...
    def generate_result(
        self,
        model_name: str,
        prompt: Prompts | None = None,
        max_length: int = 100,
        *,
        messages: Messages = None,
        **kwargs: Any,
    ) -> GenerationResult | list[GenerationResult]:
        """Like ``generate`` but returns the token ids, finish reason, timings and backend as well."""
        requests = _requests(prompt, max_length, {**kwargs, "messages": messages})
        if len(requests) == 1:
            results = [self._generate(model_name, requests[0])]
        else:  # at once: a backend that batches runs them in one batch; the first error (in order) is raised
            with ThreadPoolExecutor(min(len(requests), BATCH_THREADS), thread_name_prefix="muai-batch") as pool:
                results = list(pool.map(lambda request: self._generate(model_name, request), requests))
        return results if _is_batch(prompt) else results[0]

    def stream(
        self,
        model_name: str,
        prompt: str | None = None,
        max_length: int = 100,
        *,
        messages: Messages = None,
        **kwargs: Any,
    ) -> Stream:
        """The completion's pieces as they are decoded: ``for piece in manager.stream(...)``.

        The arguments are ``generate``'s (checked now, before any work). The pieces join to the completion;
        the returned ``Stream``'s ``result`` holds the ``GenerationResult`` after the last piece. Leaving
        the loop early stops generation and frees the model for the next request.
        """
        request = _streamed(prompt, max_length, {**kwargs, "messages": messages})
        return Stream(
            lambda streamer, cancel: self._generate(model_name, replace(request, streamer=streamer, cancel=cancel))
        )

    async def agenerate(
        self,
        model_name: str,
        prompt: Prompts | None = None,
        max_length: int = 100,
        *,
        messages: Messages = None,
        **kwargs: Any,
    ) -> str | list[str]:
        """``generate`` without blocking the event loop; cancelling the awaiting task stops the generation.

        A ``streamer`` is called from the generating thread.
        """
        requests = _requests(prompt, max_length, {**kwargs, "messages": messages})

        def work(stop: threading.Event) -> str | list[str]:
            results = []
            for request in requests:
                if stop.is_set():
                    break
                results.append(self._generate(model_name, replace(request, cancel=stop)))
            return [r.text for r in results] if _is_batch(prompt) else results[0].text

        return await call_in_thread(work)

    def astream(
        self,
        model_name: str,
        prompt: str | None = None,
        max_length: int = 100,
        *,
        messages: Messages = None,
        **kwargs: Any,
    ) -> AsyncStream:
        """``stream`` for ``async for``: waiting for a piece does not block the event loop.

        Cancelling the consuming task, or closing the stream (``aclose()``, ``async with``), stops generation.
        """
        request = _streamed(prompt, max_length, {**kwargs, "messages": messages})
        return AsyncStream(
            lambda streamer, cancel: self._generate(model_name, replace(request, streamer=streamer, cancel=cancel))
        )

    def _generate(self, model_name: str, request: GenerationRequest) -> GenerationResult:
        """Run one checked request; a backend failing mid-generation hands its tokens to the next, which
        resumes from them when it tokenises the same way. Streamed text is never repeated. A request with a
        draft model runs with the draft leased for its whole length."""
        if request.prompt_lookup is None:
            request = replace(request, prompt_lookup=self._config.prompt_lookup.get(model_name, 0))
        if request.draft_tokens is None and model_name in self._config.draft_tokens:
            request = replace(request, draft_tokens=self._config.draft_tokens[model_name])
        draft = self._drafts.lease(model_name, request)
        try:
            return self._generate_with(model_name, request, draft)
        finally:
            if draft is not None:
                self._leases.release(draft)

    def _generate_with(
        self, model_name: str, request: GenerationRequest, draft: LoadedModel | None
    ) -> GenerationResult:
        streamer = None if request.streamer is None else _CallersStreamer(request.streamer)
        if streamer is not None:
            request = replace(request, streamer=streamer)
        resume = _Resume(request, streamer)

        def run(loaded: LoadedModel) -> GenerationResult:
            attempt = resume.request_for(loaded)
            if draft is not None:
                attempt = replace(attempt, drafter=self._drafts.drafter(loaded, draft, attempt))
            started = time.perf_counter()
            try:
                with self._monitor.in_flight(loaded.backend_name, model_name):
                    result = loaded.backend.generate(loaded.handle, attempt)
            except PartialGeneration as exc:
                if resume.keep(loaded, exc):
                    raise
                raise CallerError(_failed_mid_stream(loaded, resume.streamed, engine_error(exc))) from exc
            except Exception as exc:
                if streamer is not None and streamer.pieces and not isinstance(exc, USER_ERRORS):
                    raise CallerError(_failed_mid_stream(loaded, streamer.pieces, exc)) from exc
                raise
            finally:
                if streamer is not None and streamer.error is not None:
                    raise CallerError(streamer.error)
            tokens = result.new_tokens - len(attempt.resume_ids)
            self._monitor.record_inference(
                loaded.backend_name, model_name, time.perf_counter() - started, tokens, ttft=result.ttft_s,
                queue_wait=result.queue_wait_s, token_latencies=result.token_latencies_s,
                speculation=(result.verify_calls, result.draft_tokens, result.accepted_tokens),
            )  # fmt: skip
            return replace(result, backend=loaded.backend_name)

        return self._run(model_name, "generate", run)

    def forward(self, model_name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """One forward pass: ``{"logits": float32 array [batch, seq, vocab]}`` on every backend."""
        if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
            raise InvalidInputError(
                "forward inputs must be a mapping with 'input_ids'",
                hint="pass {'input_ids': [[...token ids...]]}, optionally with 'attention_mask'",
            )

        def run(loaded: LoadedModel) -> dict[str, Any]:
            started = time.perf_counter()
            outputs = loaded.backend.forward(loaded.handle, inputs)
            shape = getattr(outputs["logits"], "shape", ())
            tokens = int(shape[0] * shape[1]) if len(shape) >= 2 else 0
            self._monitor.record_inference(
                loaded.backend_name, model_name, time.perf_counter() - started, tokens, operation="forward"
            )
            return outputs

        return self._run(model_name, "forward", run)

    def unload_model(self, model_name: str) -> bool:
        """Unload through the owning backend; False if the model was not loaded."""
        with self._lock:
            loaded = self._cache.pop(model_name)
        if loaded is None:
            return False
        self._leases.retire(loaded)
        return True

    def get_performance_stats(self, model_name: str) -> dict[str, Any]:
        """Per-backend latency and throughput of one model (across managers in this process)."""
        return self._monitor.get_model_stats(model_name)

    def compare_backends(self, backend1: str, backend2: str) -> dict[str, Any]:
        """The design's comparison: ``throughput_improvement`` > 1 means ``backend2`` is faster."""
        return self._monitor.compare_backends(backend1, backend2)

    def _run(self, model_name: str, stage: str, operation: Any) -> Any:
        """Run on the cached model (loading it first if needed); no model is unloaded while this runs on it.

        A model that fails is dropped from the cache (and released once this run lets go of it), whether or
        not a fallback then loads; a fallback model takes its place, within the cache's bounds.
        """
        with self._lock:
            cached = self._cache.get(model_name)
            loaded = None if cached is None else self._leases.acquire(cached)
        if loaded is None:
            loaded = self._load(model_name, *self._choices.get(model_name, ("transformers", None)), lease=True)
        held = [loaded]

        def retire(failed: LoadedModel) -> None:
            with self._lock:
                if self._cache.peek(model_name) is failed:
                    self._cache.pop(model_name)
            self._leases.retire(failed)

        def lease(helper: LoadedModel) -> None:  # called under the model's lock: no manager lock taken here
            held.append(self._leases.acquire(helper))

        def replace(failed: LoadedModel, load: Any) -> LoadedModel:
            """The model loaded in ``failed``'s place, once for all the requests that failed with it."""
            with self._loader(model_name):
                earlier = self._replacement(failed)
                if isinstance(earlier, BaseException):  # the reload failed for an earlier request: the same here
                    raise copy.copy(earlier)
                with self._lock:
                    if earlier is not None and self._cache.peek(model_name) is earlier:
                        held.append(self._leases.acquire(earlier))
                        return earlier
                try:
                    replacement = load()
                    held.append(self._leases.acquire(replacement))
                    with self._lock:
                        self._check_fits(replacement)
                        if model_name in self._cache:  # loaded meanwhile by a request that did not fail
                            self._leases.retire(replacement)
                        else:
                            self._cache.put(model_name, replacement, replacement.memory_bytes())
                except Exception as exc:
                    self._remember(failed, exc)
                    raise
                self._remember(failed, replacement)
                return replacement

        try:
            result = self._resolver.run(loaded, stage, operation, retire=retire, replace=replace, lease=lease)[0]
            if len(held) > 1:
                with self._lock:
                    if self._cache.peek(model_name) is loaded:  # its size now counts its helpers
                        self._cache.put(model_name, loaded, loaded.memory_bytes())
            return result
        except CallerError as exc:
            error = exc.error
        finally:
            for item in held:
                self._leases.release(item)
        raise error

    def _remember(self, failed: LoadedModel, outcome: LoadedModel | BaseException) -> None:
        """What replaced ``failed`` (a model, or the error of loading one), for the requests that failed with it.

        Weak references only, and the error without its traceback: nothing here keeps a model alive.
        """
        if isinstance(outcome, BaseException):
            outcome = copy.copy(outcome)
            outcome.__traceback__ = outcome.__cause__ = outcome.__context__ = None
            remembered: Any = lambda: outcome  # noqa: E731
        else:
            remembered = weakref.ref(outcome)
        with self._lock:
            self._replaced[id(failed)] = (weakref.ref(failed), remembered)
            while len(self._replaced) > REMEMBERED_FAILURES:
                self._replaced.pop(next(iter(self._replaced)))

    def _replacement(self, failed: LoadedModel) -> LoadedModel | BaseException | None:
        with self._lock:
            failed_ref, outcome = self._replaced.get(id(failed), (lambda: None, lambda: None))
            return outcome() if failed_ref() is failed else None

    def _first_choice(self, model_name: str, override: BackendChoice) -> tuple[str, ...]:
        if override is None:
            return self._config.model_overrides.get(model_name, (self.backend_type,))
        names = (override,) if isinstance(override, str) else tuple(override)
        if not names:
            raise ConfigurationError("backend_override is an empty list", hint="name at least one backend")
        return tuple(self.registry.check_backend_name(n, what="backend_override") for n in names)

    def _checked(self, config: MuaiConfig) -> MuaiConfig:
        check = self.registry.check_backend_name
        check(config.default_backend, what="backend.default")
        for name in config.priority:
            check(name, what="backend.priority entry")
        for model, chain in config.model_overrides.items():
            for name in chain:
                check(name, what=f"model_overrides.{model}")
        return config

    def _check_fits(self, loaded: LoadedModel) -> None:
        """Refuse (and unload) a model that alone holds more than the cache's byte bound."""
        size, bound = loaded.memory_bytes(), self._cache.max_bytes
        if bound is not None and size > bound:
            self._leases.retire(loaded)
            raise ModelLoadError(
                f"'{loaded.name}' holds {size / 2**20:.0f} MiB on {loaded.backend_name}, "
                f"more than max_cache_bytes ({bound / 2**20:.0f} MiB)",
                hint="raise max_cache_bytes, or load a smaller variant (e.g. OpenVINO precision: INT8)",
            )


#: Every manager not yet collected; their models are unloaded at interpreter exit.
_LIVE_MANAGERS: weakref.WeakSet[ModelManager] = weakref.WeakSet()


def _unload_all() -> None:
    """Unload every live manager's models while the runtimes that hold them still work."""
    for manager in list(_LIVE_MANAGERS):
        for name in manager.loaded_models():
            manager.unload_model(name)


def _unload_first_at_exit() -> None:
    """(Re-)register ``_unload_all`` last, so it runs first at exit: before the exit hooks of any runtime
    imported to load a model (they run in reverse order of registration)."""
    atexit.unregister(_unload_all)
    atexit.register(_unload_all)


class _CallersStreamer:
    """The caller's streamer, counting the pieces and characters it got and remembering what it raised (the
    caller's error). The first ``skip`` characters it is handed are dropped: the caller has them already."""

    def __init__(self, streamer: Streamer) -> None:
        self._streamer = streamer
        self.pieces = 0
        self.chars = 0
        self.skip = 0
        self.error: Exception | None = None

    def __call__(self, text: str) -> bool | None:
        cut = min(self.skip, len(text))
        text, self.skip = text[cut:], self.skip - cut
        if not text:
            return None
        self.pieces += 1
        self.chars += len(text)
        try:
            return self._streamer(text)
        except Exception as exc:
            self.error = exc
            raise


class _Resume:
    """The tokens a failed backend produced for one request, and the tokenizer they belong to."""

    def __init__(self, request: GenerationRequest, streamer: _CallersStreamer | None) -> None:
        self._request, self._streamer = request, streamer
        self._ids: tuple[int, ...] = ()
        self._tokenizer: object = None
        self._origin = ""

    def keep(self, loaded: LoadedModel, exc: PartialGeneration) -> bool:
        """Remember what ``loaded`` produced; False when nothing can continue text already streamed."""
        self._ids, self._tokenizer, self._origin = exc.produced_ids, _tokenizer(loaded), loaded.backend_name
        return self._tokenizer is not None or not self.streamed

    @property
    def streamed(self) -> int:
        """The pieces the caller has had."""
        return 0 if self._streamer is None else self._streamer.pieces

    def request_for(self, loaded: LoadedModel) -> GenerationRequest:
        """The request to run on ``loaded``: resumed after the tokens produced so far where its tokenizer is the
        same, else from the start (refused once text was streamed)."""
        streamer, ids = self._streamer, self._ids
        if ids and self._tokenizer is not None and _tokenizer(loaded) == self._tokenizer:
            if streamer is not None:
                streamer.skip = streamer.chars  # the resumed stream starts with the text of ``ids``
            return replace(self._request, resume_ids=ids)
        if ids and self.streamed:
            raise CallerError(
                InferenceError(
                    f"backend '{self._origin}' failed to generate with '{loaded.name}' after streaming "
                    f"{self.streamed} piece(s), and '{loaded.backend_name}' tokenises differently, so it cannot "
                    "continue that text",
                    hint="retry the request; it now runs on " + loaded.backend_name,
                )
            )
        return self._request


def _tokenizer(loaded: LoadedModel) -> object:
    """What identifies ``loaded``'s tokenizer (``tokenizer_digest`` in its info); None when it does not say."""
    return loaded.backend.info(loaded.handle).get("tokenizer_digest")


def _failed_mid_stream(loaded: LoadedModel, pieces: int, exc: Exception) -> InferenceError:
    """A backend failure after text went out: another backend's text would not continue it, so no fallback."""
    return InferenceError(
        f"backend '{loaded.backend_name}' failed to generate with '{loaded.name}' after streaming {pieces} "
        f"piece(s): {type(exc).__name__}: {exc}",
        hint="no fallback once text has been streamed; retry the request (it may then fall back)",
    )


def _is_batch(prompt: object) -> bool:
    return isinstance(prompt, (list, tuple))


def _requests(prompt: Prompts | None, max_length: Any, kwargs: dict[str, Any]) -> list[GenerationRequest]:
    """One checked request per prompt; a bad prompt in a batch is named by its index."""
    if not _is_batch(prompt):
        return [GenerationRequest.from_kwargs(prompt, max_length, **kwargs)]
    if not prompt:
        raise InvalidInputError("the batch holds no prompts", hint="pass a list of at least one prompt")
    for index, item in enumerate(prompt):
        try:
            GenerationRequest(prompt=item).validate()
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"prompts[{index}] of the batch (counting from 0): {exc.message}", hint=exc.raw_hint
            ) from exc
    return [GenerationRequest.from_kwargs(item, max_length, **kwargs) for item in prompt]


def _streamed(prompt: str | None, max_length: Any, kwargs: dict[str, Any]) -> GenerationRequest:
    """The checked request of a stream, which hands the pieces out itself."""
    if "streamer" in kwargs:
        raise InvalidInputError(
            "a stream takes no streamer: it yields the pieces itself", hint="iterate over the stream instead"
        )
    if _is_batch(prompt):
        raise InvalidInputError("a stream takes one prompt, not a batch", hint="stream each prompt in turn")
    return GenerationRequest.from_kwargs(prompt, max_length, **kwargs)
