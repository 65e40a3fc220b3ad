"""A replica's health check: usable while a backend of the config's chain can run (Ray replaces it otherwise)."""

from __future__ import annotations

import pytest

from muai_core import ModelManager
from muai_core.errors import BackendError
from muai_core.serving.ray import check_usable


def test_a_replica_is_healthy_while_a_backend_of_its_chain_is_available(ray_config, monkeypatch):
    manager = ModelManager(config_path=ray_config)
    check_usable(manager)
    monkeypatch.setattr(manager, "get_available_backends", lambda: ["openvino"])  # the fault: pytorch is gone
    with pytest.raises(BackendError, match="no backend of the chain pytorch is available"):
        check_usable(manager)
