"""The template backend against muai's conformance suite: keep this test when you copy the template."""

from __future__ import annotations

import pytest

from muai_core.testing.conformance import BackendConformance, ConformanceTarget
from muai_template.plugin import TemplateBackend


class TestTemplateConformance(BackendConformance):
    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:
        # Point model/config at a model your engine serves, e.g. config={"models_dir": "tests/models"}.
        return ConformanceTarget(TemplateBackend, "template", model="any-model")


def test_installed_backend_is_discovered():
    from muai_core.plugins import PluginRegistry

    registry = PluginRegistry()
    registry.load_entry_points()
    assert "template" in registry.backend_names()
