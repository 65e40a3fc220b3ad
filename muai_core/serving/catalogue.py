"""The models a server can serve: those named in the config, the model folders muai resolves, and those loaded."""

from __future__ import annotations

from typing import Any

from muai_core.errors import BackendError
from muai_core.inventory import installed_models
from muai_core.manager import ModelManager


def model_names(manager: ModelManager) -> list[str]:
    """Every servable name: config ``models:`` entries, installed model folders (``models/{name}``), loaded models."""
    installed = [model.name for model in installed_models(manager.config)]
    return list(dict.fromkeys([*manager.config.models, *installed, *manager.loaded_models()]))


def is_servable(manager: ModelManager, name: str) -> bool:
    return name in manager.loaded_models() or name in model_names(manager)


def describe(manager: ModelManager, name: str) -> dict[str, Any]:
    """``/v1/models``' entry: the backend that holds the model (else the first it would load on) and precision."""
    entry: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": "muai"}
    if name in manager.loaded_models():
        try:
            loaded = manager.get_model(name)
            return {**entry, "backend": loaded.backend_name, "precision": precision(manager, name), "loaded": True}
        except BackendError:  # unloaded in the meantime: described as not loaded
            pass
    try:
        plan = manager.plan(name)
    except BackendError:
        return {**entry, "backend": None, "precision": None, "loaded": False}
    backend = plan.chain[0]
    return {**entry, "backend": backend, "precision": plan.settings_for(backend).get("precision"), "loaded": False}


def precision(manager: ModelManager, name: str, backend: str | None = None) -> str | None:
    """The precision of the loaded model (an OpenVINO export's, else its dtype); None when not loaded on ``backend``."""
    try:
        loaded = manager.get_model(name)
        if backend is not None and loaded.backend_name != backend:
            return None
        info = loaded.backend.info(loaded.handle)
    except Exception:  # a model gone, or a backend that cannot describe it: no figure rather than no answer
        return None
    value = info.get("precision") or info.get("dtype")
    return None if value is None else str(value)
