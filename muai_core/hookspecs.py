"""The hooks a muai plugin implements.

A backend plugin is one object registered under its backend name (the entry-point name in the
``muai`` group). Pluggy validates its hooks at registration; the core then calls the hooks of that
one plugin directly, so a generation or a decode step never goes through pluggy's dispatch.
An implementation may accept a subset of a hook's arguments: arguments are added, never renamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse
    import threading
    from contextlib import AbstractContextManager

    from muai_core.contracts import Availability, GenerationRequest, GenerationResult, LoadRequest

PROJECT = "muai"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def muai_backend_available() -> Availability:
    """Say whether this backend can run here, and why not, without loading a model.

    "Available" means the runtime imports: import its modules (``muai_core.availability.modules_import``
    does, once per process) and name the one that fails and why.
    """


@hookspec
def muai_load_model(request: LoadRequest) -> Any:
    """Load the model described by ``request`` and return a handle owned by this backend.

    :param request: model name and source, device, this backend's config section.
    :return: an opaque handle passed back to the other hooks.
    Raise a muai error (``ModelLoadError`` with a hint) when the model cannot be loaded.
    """


@hookspec
def muai_forward(model: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Run one forward pass.

    :param inputs: ``input_ids`` (and optional ``attention_mask``), integer arrays of shape [batch, seq].
    :return: ``{"logits": numpy.ndarray}`` of dtype float32 and shape [batch, seq, vocab].
    """


@hookspec
def muai_generate(model: Any, request: GenerationRequest) -> GenerationResult:
    """Generate text for ``request`` (already validated by the core).

    :return: the text, the new token ids, why generation stopped and its timings.
    """


@hookspec
def muai_decode_step(model: Any, longest: int, cancel: threading.Event | None) -> AbstractContextManager[Any] | None:
    """Open a decode step on a loaded model for the core to drive (a draft model's, in speculative decoding).

    Optional. Return a context manager that gives a step for one sequence of at most ``longest`` positions and
    frees it on exit: called with token ids [1, n] it returns the logits after the last; ``length`` is the
    tokens fed so far, ``truncate(length)`` rolls it back and ``can_verify`` is True. A
    ``muai_core.batching.BatchedSequence`` of a batcher whose engine has ``truncate`` is one:
    ``return batcher.sequence(longest, cancel)``. Return None where this model cannot (the core then decodes
    without the draft and says why); a step whose ``cancel`` is set may raise ``muai_core.batching.Cancelled``.
    """


@hookspec
def muai_unload_model(model: Any) -> None:
    """Release everything the handle holds (weights, compiled graphs, device memory)."""


@hookspec
def muai_model_info(model: Any) -> dict[str, Any]:
    """Describe a loaded model: at least ``backend`` and ``device``; anything else useful.

    ``memory_bytes`` (int), the memory the model holds, lets ``max_cache_bytes`` count it.
    """


@hookspec
def muai_check_settings(settings: Mapping[str, Any]) -> None:
    """Raise ``ConfigurationError`` when this backend's config section is invalid.

    Optional; ``muai doctor`` calls it with ``backend.<name>`` (empty when the config has none) without
    loading a model.
    """


@hookspec
def muai_register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add sub-commands to the ``muai`` CLI. Each parser sets ``func=callable(args) -> int``."""


@hookspec
def muai_diagnostics() -> list[str]:
    """Lines for ``muai doctor``: runtime versions and devices this plugin sees. May import its runtime."""


@hookspec
def muai_known_models() -> dict[str, str]:
    """Models this plugin can fetch without the user naming a source: ``{name: the command that gets it}``.

    ``muai models`` lists them, and a model that is not installed is answered with its command.
    """


#: The hooks that make a plugin a backend.
BACKEND_HOOKS = (
    "muai_backend_available",
    "muai_load_model",
    "muai_forward",
    "muai_generate",
    "muai_unload_model",
    "muai_model_info",
)
