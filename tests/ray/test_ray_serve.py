"""``muai_core.serving.ray`` on a local Ray cluster: two replicas behind Ray Serve's proxy, the openai client,
answers equal to ``ModelManager``'s, and a replica killed under load."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import ray
from ray import serve

from muai_core import ModelManager
from muai_core.serving.ray import APP_NAME, deployment
from tests.ray.conftest import LONG_MODEL, MODEL, free_port, ray_init_options

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
REPLICA_DEPLOYMENT = "muai-replica"


@pytest.fixture(scope="module")
def base_url(ray_config) -> Iterator[str]:
    """The server on a local Ray cluster (two replicas, ``MODEL`` preloaded), shut down after the module."""
    ray.init(**ray_init_options())
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment(ray_config, replicas=2, preload=[MODEL]), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="none", max_retries=0, timeout=60)


def replica_states() -> dict[str, int]:
    return dict(serve.status().applications[APP_NAME].deployments[REPLICA_DEPLOYMENT].replica_states)


def test_two_replicas_answer_as_the_manager_does_streamed_or_not(base_url, ray_config):
    assert replica_states() == {"RUNNING": 2}
    expected = ModelManager(config_path=ray_config).generate(MODEL, messages=QUESTION, max_new_tokens=12)
    for _ in range(4):  # several requests: both replicas answer some
        whole = client(base_url).chat.completions.with_raw_response.create(
            model=MODEL, messages=QUESTION, max_tokens=12, temperature=0
        )
        answer = whole.parse()
        assert answer.choices[0].message.content == expected and answer.usage.completion_tokens == 12
        assert whole.headers["x-muai-backend"] == "pytorch"
        chunks = list(
            client(base_url).chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, stream=True)
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
        assert chunks[-1].choices[0].finish_reason == "length"


def test_errors_keep_openais_shape_through_ray(base_url):
    with pytest.raises(openai.NotFoundError) as caught:
        client(base_url).chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=4)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client(base_url).chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=0)
    assert caught.value.param == "max_tokens"
    huge = [{"role": "user", "content": "x" * (2 << 20)}]  # past the default 1 MiB: the gateway refuses it
    response = httpx.post(base_url + "/v1/chat/completions", json={"model": MODEL, "messages": huge}, timeout=60)
    assert response.status_code == 413 and "1048576 bytes" in response.json()["error"]["message"]


def test_a_killed_replica_is_replaced_and_its_requests_answered_or_refused_cleanly(base_url):
    """Long answers in flight on both replicas; one replica killed: each request ends (answered elsewhere, or a
    503 in OpenAI's shape) within bounded time, new requests are answered, and Ray brings the replica back."""
    outcomes: list[str] = []

    def whole() -> None:
        outcomes.append(outcome(lambda: client(base_url).completions.create(
            model=LONG_MODEL, prompt="hello", max_tokens=3000
        ).usage.completion_tokens))  # fmt: skip

    def streamed() -> None:
        outcomes.append(outcome(lambda: sum(1 for _ in client(base_url).completions.create(
            model=LONG_MODEL, prompt="hello", max_tokens=3000, stream=True
        ))))  # fmt: skip

    threads = [threading.Thread(target=work, daemon=True) for work in (whole, streamed) * 2]
    for thread in threads:
        thread.start()
    time.sleep(2)  # all four are generating by now
    victim = next(a for a in ray.util.list_named_actors(all_namespaces=True) if f"#{REPLICA_DEPLOYMENT}#" in a["name"])
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]))
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads), "a request hung after its replica was killed"
    assert len(outcomes) == 4 and all(o in ("answered", "503") for o in outcomes), outcomes

    answer = client(base_url).chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5)
    assert answer.usage.completion_tokens == 5
    deadline = time.monotonic() + 120
    while replica_states() != {"RUNNING": 2}:
        assert time.monotonic() < deadline, f"Ray did not replace the killed replica: {replica_states()}"
        time.sleep(1)


def outcome(call) -> str:
    """``answered`` when ``call`` returns, ``503`` for OpenAI's error for a lost replica; anything else raises."""
    try:
        call()
    except openai.APIStatusError as exc:
        assert exc.status_code == 503 and exc.code == "replica_unavailable", exc
        return "503"
    except openai.APIError as exc:  # the stream had started: its last event is the error
        assert exc.code == "replica_unavailable", exc
        return "503"
    return "answered"
