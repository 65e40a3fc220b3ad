"""``muai serve`` as a user runs it: a real process, its flags, and a clear error without the serve extra."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from tests.serve.conftest import MODEL, free_port


def muai(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "muai_core.cli", *args]
    return subprocess.Popen(command, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE, text=True, **kwargs)


def test_muai_serve_preloads_models_and_requires_its_key(write_config):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = muai("serve", "--port", str(port), "--config", write_config(), "--models", MODEL, "--api-key", "k3y")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "muai serve did not start"
            try:
                health = httpx.get(base + "/health")
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        assert health.json()["loaded"] == [MODEL]  # --models loaded it before the server started
        assert httpx.get(base + "/v1/models").status_code == 401
        listed = httpx.get(base + "/v1/models", headers={"Authorization": "Bearer k3y"}).json()["data"]
        assert {"id": MODEL, "backend": "pytorch", "loaded": True}.items() <= listed[0].items()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_muai_serve_names_an_unknown_model_of_models(write_config):
    process = muai("serve", "--config", write_config(), "--models", "nope")
    _, error = process.communicate(timeout=120)
    assert process.returncode == 2 and "--models: unknown model 'nope'" in error and MODEL in error


def test_muai_serve_without_the_extra_says_what_to_install(tmp_path):
    (tmp_path / "fastapi.py").write_text("raise ImportError('No module named fastapi')\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    process = muai("serve", env={"PYTHONPATH": path})
    _, error = process.communicate(timeout=120)
    assert process.returncode == 2 and "pip install 'muai-core[serve]'" in error and "fastapi" in error
