"""A backend plugin seen from the core: plain calls to that one plugin's hooks."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import pluggy

from muai_core.contracts import Availability, GenerationRequest, GenerationResult, LoadRequest
from muai_core.errors import PluginError
from muai_core.hookspecs import BACKEND_HOOKS


class Backend:
    """Calls one plugin's hook implementations directly, skipping pluggy's dispatch on the hot path.

    An implementation may take a subset of the spec's arguments, as pluggy allows.
    """

    def __init__(self, name: str, plugin: object, pm: pluggy.PluginManager) -> None:
        self.name = name
        self.plugin = plugin
        self._impls = {
            caller.name: impl
            for caller in pm.get_hookcallers(plugin) or ()
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin
        }
        missing = [hook for hook in BACKEND_HOOKS if hook not in self._impls]
        if missing:
            raise PluginError(
                f"plugin '{name}' implements muai_load_model but not {', '.join(missing)}",
                hint="a backend must implement every hook in muai_core.hookspecs.BACKEND_HOOKS",
            )

    def _call(self, hook: str, **kwargs: Any) -> Any:
        impl = self._impls[hook]
        return impl.function(*[kwargs[arg] for arg in impl.argnames])

    def available(self) -> Availability:
        result = self._call("muai_backend_available")
        return self._checked("muai_backend_available", result, Availability)

    def load(self, request: LoadRequest) -> Any:
        handle = self._call("muai_load_model", request=request)
        if handle is None:
            raise PluginError(f"backend '{self.name}' returned no model from muai_load_model")
        return handle

    def forward(self, handle: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        outputs = self._call("muai_forward", model=handle, inputs=inputs)
        if not isinstance(outputs, dict) or "logits" not in outputs:
            raise PluginError(f"backend '{self.name}' muai_forward must return a dict with 'logits'")
        return outputs

    def generate(self, handle: Any, request: GenerationRequest) -> GenerationResult:
        result = self._call("muai_generate", model=handle, request=request)
        return self._checked("muai_generate", result, GenerationResult)

    def decode_step(self, handle: Any, longest: int, cancel: threading.Event | None) -> AbstractContextManager | None:
        """A decode step on the model (``muai_decode_step``); None where the plugin lacks the hook or says none."""
        if "muai_decode_step" not in self._impls:
            return None
        return self._call("muai_decode_step", model=handle, longest=longest, cancel=cancel)

    def unload(self, handle: Any) -> None:
        self._call("muai_unload_model", model=handle)

    def info(self, handle: Any) -> dict[str, Any]:
        return dict(self._call("muai_model_info", model=handle))

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Validate this backend's config section through ``muai_check_settings``, if the plugin has it."""
        if "muai_check_settings" in self._impls:
            self._call("muai_check_settings", settings=settings)

    def _checked(self, hook: str, result: Any, expected: type) -> Any:
        if not isinstance(result, expected):
            raise PluginError(
                f"backend '{self.name}' {hook} returned {type(result).__name__}, expected {expected.__name__}"
            )
        return result
