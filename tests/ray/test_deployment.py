"""``muai_core.serving.ray`` without a cluster: the replica's health check, the builder ``serve run`` calls, and
its arguments checked before anything starts."""

from __future__ import annotations

import pytest
from ray.serve import Application
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

from muai_core import ModelManager
from muai_core.errors import BackendError, ConfigurationError
from muai_core.serving.ray import build, check_usable, deployment
from tests.ray.conftest import MODEL


def test_a_replica_is_healthy_while_a_backend_of_its_chain_is_available(ray_config, monkeypatch):
    manager = ModelManager(config_path=ray_config)
    check_usable(manager)
    monkeypatch.setattr(manager, "get_available_backends", lambda: ["openvino"])  # the fault: pytorch is gone
    with pytest.raises(BackendError, match="no backend of the chain pytorch is available"):
        check_usable(manager)


def test_serve_run_builds_the_application_from_its_arguments(ray_config):
    app = call_user_app_builder_with_args_if_necessary(build, {"config": ray_config, "replicas": "2", "models": MODEL})
    assert isinstance(app, Application)
    with pytest.raises(ConfigurationError, match="replicas must be an int >= 1, got 'two'"):
        build({"config": ray_config, "replicas": "two"})


def test_bad_replicas_and_a_bad_config_fail_before_the_cluster_is_asked(ray_config, tmp_path):
    with pytest.raises(ConfigurationError, match="replicas must be an int >= 1, got 0"):
        deployment(ray_config, replicas=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("serve: {max_tokens: -1}\n")
    with pytest.raises(ConfigurationError, match="serve.max_tokens"):
        deployment(bad)
