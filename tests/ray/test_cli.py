"""``muai serve --ray`` as a user runs it: a local cluster of its own, its flags, and a clear error without Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import httpx

from tests.ray.conftest import MODEL, free_port


def muai(*args: str, env: dict[str, str] | None = None, stderr: Any = subprocess.PIPE) -> subprocess.Popen:
    command = [sys.executable, "-m", "muai_core.cli", *args]
    return subprocess.Popen(command, env={**os.environ, **(env or {})}, stderr=stderr, text=True)


def test_muai_serve_ray_answers_on_its_port_and_stops_on_sigterm(ray_config, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    flags = ("--ray", "--replicas", "1", "--port", str(port), "--config", ray_config, "--models", MODEL)
    with log.open("w") as stderr:  # Ray logs a lot: a file, not a pipe that could fill up
        process = muai("serve", *flags, stderr=stderr)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "muai serve --ray did not start"
            try:
                health = httpx.get(base + "/health", timeout=10)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert health.json()["loaded"] == [MODEL]
        answer = httpx.post(
            base + "/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 3}, timeout=60
        ).json()
        assert answer["usage"]["completion_tokens"] == 3 and answer["muai"]["backend"] == "pytorch"
    finally:
        process.terminate()
        process.wait(timeout=120)
    assert process.returncode == 0, log.read_text()[-3000:]


def test_more_replicas_than_the_cluster_has_cpus_for_is_refused_not_left_waiting(ray_config):
    process = muai("serve", "--ray", "--replicas", "8", "--config", ray_config, "--port", str(free_port()))
    _, error = process.communicate(timeout=180)
    assert process.returncode == 2 and "--replicas 8 with --replica-cpus 1 need 8 CPUs" in error, error[-2000:]
    assert "a smaller --replica-cpus" in error


def test_replicas_without_ray_is_refused():
    process = muai("serve", "--replicas", "2")
    _, error = process.communicate(timeout=120)
    assert process.returncode == 2 and "--replicas needs --ray" in error


def test_muai_serve_ray_without_ray_says_what_to_install(tmp_path):
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    process = muai("serve", "--ray", env={"PYTHONPATH": path})
    _, error = process.communicate(timeout=120)
    assert process.returncode == 2 and "pip install 'muai-core[ray]'" in error
