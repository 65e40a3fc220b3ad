"""muai: run Hugging Face language models through pluggable inference backends."""

from muai_core.contracts import Availability, GenerationRequest, GenerationResult, LoadRequest
from muai_core.errors import (
    BackendError,
    BackendInitializationError,
    ConfigurationError,
    InferenceError,
    InvalidInputError,
    ModelLoadError,
    PluginError,
    ResourceExhausted,
)
from muai_core.hookspecs import hookimpl
from muai_core.manager import ModelManager
from muai_core.monitor import PerformanceMonitor
from muai_core.streaming import AsyncStream, Stream

__version__ = "0.1.0"

__all__ = [
    "AsyncStream",
    "Availability",
    "BackendError",
    "BackendInitializationError",
    "ConfigurationError",
    "GenerationRequest",
    "GenerationResult",
    "InferenceError",
    "InvalidInputError",
    "LoadRequest",
    "ModelLoadError",
    "ModelManager",
    "PerformanceMonitor",
    "PluginError",
    "ResourceExhausted",
    "Stream",
    "hookimpl",
]
