"""The conformance suite, run against the core's own counting backend."""

from __future__ import annotations

import pytest

from muai_core.testing import CountingBackend
from muai_core.testing.conformance import BackendConformance, ConformanceTarget


class TestCountingBackendConformance(BackendConformance):
    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:
        return ConformanceTarget(lambda: CountingBackend("counter"), "counter", model="any-name")
