"""Errors while serving: a client that leaves, a full queue, failing backends, an unexpected bug."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from muai_core import ModelManager
from muai_core.errors import ResourceExhausted
from tests.serve.conftest import LONG_MODEL, MODEL

QUESTION = [{"role": "user", "content": "Tell me a long story."}]


@pytest.fixture
def manager(write_config) -> ModelManager:
    return ModelManager(config_path=write_config())


def test_a_client_that_leaves_mid_stream_stops_its_generation(serve, client_for, write_config):
    manager = ModelManager(config_path=write_config(serve={"max_tokens": 4000}))
    client = client_for(serve(manager, preload=[LONG_MODEL]))
    budget = 4000
    started = time.perf_counter()
    whole = client.completions.create(
        model=LONG_MODEL, prompt="Once", max_tokens=budget, extra_body={"ignore_eos": True}
    )
    full_run = time.perf_counter() - started
    assert whole.usage.completion_tokens == budget

    stream = client.completions.create(
        model=LONG_MODEL, prompt="Once", max_tokens=budget, stream=True, extra_body={"ignore_eos": True}
    )
    next(iter(stream))
    stream.close()  # the client leaves
    started = time.perf_counter()
    short = client.completions.create(model=LONG_MODEL, prompt="Twice", max_tokens=2)
    assert short.usage.completion_tokens == 2
    assert time.perf_counter() - started < full_run / 2, "the next request waited for the abandoned generation"
    abandoned = manager.performance_monitor.inferences(model_name=LONG_MODEL)[-2]
    assert abandoned.tokens_generated < budget / 2


def test_a_full_queue_is_a_429_with_retry_after(serve, client_for, manager, monkeypatch):
    client = client_for(serve(manager, preload=[MODEL]))
    loaded = manager.get_model(MODEL)

    def full(handle, request):  # fault injection: the backend's queue is full
        raise ResourceExhausted("the queue of 'tiny' is full (8 waiting)")

    monkeypatch.setattr(loaded.backend, "generate", full)
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, stream=stream)
        assert caught.value.response.headers["retry-after"] == "1" and caught.value.code == "queue_full"
    assert manager.get_model(MODEL) is loaded  # a full queue is no reason to fall back


def test_every_backend_failing_is_a_503_without_a_traceback(serve, client_for, write_config, monkeypatch):
    manager = ModelManager(config_path=write_config(("pytorch",)))
    client = client_for(serve(manager, preload=[MODEL]))
    monkeypatch.setattr(manager.get_model(MODEL).backend, "generate", _broken)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)
    assert caught.value.status_code == 503 and "injected engine fault" in caught.value.message
    assert "Traceback" not in caught.value.response.text


def test_an_unexpected_error_is_a_bare_500(serve, manager, monkeypatch):
    base = serve(manager)

    def bug(*args, **kwargs):  # fault injection: a bug in the server's path
        raise KeyError("secret internals")

    monkeypatch.setattr(manager, "astream", bug)
    response = httpx.post(base + "/v1/chat/completions", json={"model": MODEL, "messages": QUESTION})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "message": "internal server error (logged on the server)", "type": "server_error", "param": None, "code": None
    }  # fmt: skip


def _broken(handle, request):
    raise RuntimeError("injected engine fault")
