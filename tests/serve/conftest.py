"""A live ``muai serve`` on 127.0.0.1 (uvicorn in a thread) over tiny models built offline, and the openai client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi", reason="muai serve needs the serve extra: pip install 'muai-core[serve]'")
pytest.importorskip("muai_pytorch", reason="the server tests run tiny models on muai-pytorch")
import uvicorn  # noqa: E402

from muai_core import ModelManager  # noqa: E402
from muai_core.serving.app import create_app  # noqa: E402

MODEL = "tiny"
#: A tiny model with a long context, whose generations last long enough to be cut short.
LONG_MODEL = "tiny-long"


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """``models/tiny`` (a random GPT-2 with a chat template), ``models/tiny-long`` (the same with a long context)
    and, where muai-openvino is installed, the FP32 export of ``tiny``."""
    from muai_pytorch.testing import build_tiny_model

    root = tmp_path_factory.mktemp("serve-store")
    build_tiny_model(root / "models" / MODEL, "gpt2")
    build_tiny_model(root / "models" / LONG_MODEL, "gpt2", context=4096)
    try:
        from muai_openvino.export.pipeline import export_model
    except ImportError:
        return root
    from muai_core.config import parse_config

    export_model(MODEL, parse_config({"models_dir": str(root / "models")}), "FP32", str(root / "models" / "openvino"))
    return root


@pytest.fixture
def write_config(store, tmp_path) -> Callable[..., str]:
    """``write(chain=["pytorch"], serve={...})``: a config serving the store, the chain's first backend first."""

    def write(chain: tuple[str, ...] = ("pytorch",), **top) -> str:
        backend = {
            "default": chain[0],
            "priority": list(chain),
            "openvino": {"cache_dir": str(store / "models" / "openvino")},
        }
        data = {"models_dir": str(store / "models"), "backend": backend, **top}
        path = tmp_path / "system.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    return write


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """``serve(manager_or_config, **create_app_kwargs)`` starts a server and returns its base URL; stopped after."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(manager_or_config: ModelManager | str, **kwargs) -> str:
        app = create_app(manager_or_config, **kwargs)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="muai-serve-test", daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def client_for():
    """``client_for(base_url, api_key="none")``: the official openai client pointed at a test server."""
    openai = pytest.importorskip("openai")

    def make(base_url: str, api_key: str = "none", **kwargs):
        return openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=60, **kwargs)

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
