"""``from mm_orch.runtime.model_manager import ModelManager`` keeps working: it is muai_core's."""

from muai_core.errors import (
    BackendError,
    BackendInitializationError,
    ConfigurationError,
    InferenceError,
    ModelLoadError,
)
from muai_core.manager import ModelManager

__all__ = [
    "BackendError",
    "BackendInitializationError",
    "ConfigurationError",
    "InferenceError",
    "ModelLoadError",
    "ModelManager",
]
