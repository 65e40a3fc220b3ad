"""Helpers for testing muai and backend plugins: in-place registration and small real backends."""

from muai_core.testing.backends import CountingBackend, FaultyBackend, TokenBackend
from muai_core.testing.registration import registered

__all__ = ["CountingBackend", "FaultyBackend", "registered", "TokenBackend"]
