"""The official openai client against a live ``muai serve``: answers equal ``ModelManager``'s, errors are OpenAI's."""

from __future__ import annotations

import httpx
import openai
import pytest

from muai_core import ModelManager
from tests.serve.conftest import MODEL

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The capital of France is"


@pytest.fixture
def manager(write_config) -> ModelManager:
    return ModelManager(config_path=write_config())


@pytest.fixture
def client(serve, client_for, manager):
    return client_for(serve(manager))


def backends() -> list[str]:
    try:
        import muai_openvino  # noqa: F401
    except ImportError:
        return ["pytorch"]
    return ["pytorch", "openvino"]


@pytest.mark.parametrize("backend", backends())
def test_chat_answers_equal_the_managers_streamed_or_not(serve, client_for, write_config, backend):
    manager = ModelManager(config_path=write_config((backend,)))
    client = client_for(serve(manager))
    expected = manager.generate(MODEL, messages=QUESTION, max_new_tokens=12)
    whole = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=QUESTION, max_tokens=12, temperature=0
    )
    answer = whole.parse()
    assert answer.choices[0].message.content == expected
    assert whole.headers["x-muai-backend"] == backend and answer.model_extra["muai"]["backend"] == backend
    assert answer.usage.completion_tokens == 12 and answer.usage.prompt_tokens > 0
    assert answer.choices[0].finish_reason == "length"

    chunks = list(client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "length" and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].model_extra["muai"]["backend"] == backend


def test_completions_equal_the_managers_streamed_or_not(client, manager):
    expected = manager.generate(MODEL, PROMPT, max_new_tokens=10, return_full_text=False)
    answer = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0)
    assert answer.choices[0].text == expected and answer.usage.completion_tokens == 10
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 10


def test_a_stop_string_ends_the_answer_as_it_ends_the_managers(client, manager):
    full = manager.generate(MODEL, messages=QUESTION, max_new_tokens=16)
    stop = full[5:8]
    expected = manager.generate(MODEL, messages=QUESTION, max_new_tokens=16, stop=[stop])
    answer = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16, stop=stop)
    assert answer.choices[0].message.content == expected == full[: full.index(stop)]
    assert answer.choices[0].finish_reason == "stop"
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16, stop=[stop], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**6}, "max_tokens"),
        ({"temperature": 7}, "temperature"),
        ({"n": 2}, "n"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages"),
        ({"seed": -1}, "seed"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_parameter(client, arguments, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**{"model": MODEL, "messages": QUESTION, "max_tokens": 4, **arguments})
    assert caught.value.status_code == 400 and caught.value.param == param


def test_a_prompt_beyond_the_context_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt="word " * 400, max_tokens=4)
    assert "context" in caught.value.message and caught.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 400}], max_tokens=4)
    assert "context" in caught.value.message and caught.value.param == "messages"


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=4)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


def test_models_health_and_metrics(serve, client_for, manager):
    base = serve(manager)
    client = client_for(base)
    listed = {model.id: model.model_extra for model in client.models.list()}
    assert listed[MODEL] == {"backend": "pytorch", "precision": None, "loaded": False}
    client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5)
    assert {model.id: model.model_extra["loaded"] for model in client.models.list()}[MODEL] is True
    assert httpx.get(base + "/health").json() == {"status": "ok", "loaded": [MODEL]}
    metrics = scrape(base)
    at = {"model": MODEL, "backend": "pytorch"}
    assert metrics["muai_requests_total", (("endpoint", "chat"), *at.items(), ("status", "200"))] == 1
    assert metrics["muai_tokens_total", (*at.items(), ("kind", "completion"))] == 5
    assert metrics["muai_ttft_seconds_count", tuple(at.items())] == 1
    assert metrics["muai_token_latency_seconds_count", tuple(at.items())] == 4
    assert metrics["muai_queue_depth", (("model", MODEL),)] == 0


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed: ``{(sample name, label pairs in order of the names given above): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    order = ("endpoint", "model", "backend", "kind", "status", "from_backend", "to_backend", "le")
    text = httpx.get(base + "/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items(), key=lambda item: order.index(item[0])))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_an_api_key_guards_every_route_but_health(serve, client_for, manager):
    base = serve(manager, api_key="s3cret")
    with pytest.raises(openai.AuthenticationError):
        client_for(base, api_key="wrong").models.list()
    assert httpx.get(base + "/metrics").status_code == 401
    assert httpx.get(base + "/health").status_code == 200
    answer = client_for(base, api_key="s3cret").chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=3)
    assert answer.usage.completion_tokens == 3


def test_a_body_past_the_limit_is_refused(serve, write_config):
    base = serve(write_config(serve={"max_request_bytes": 2000, "max_tokens": 8}))
    content = "x" * 3000
    response = httpx.post(
        base + "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": content}]}
    )
    assert response.status_code == 413 and "2000 bytes" in response.json()["error"]["message"]
    response = httpx.post(base + "/v1/chat/completions", json={"model": MODEL, "messages": QUESTION, "max_tokens": 9})
    assert response.status_code == 400 and response.json()["error"]["param"] == "max_tokens"


def test_bad_json_and_unknown_routes_answer_in_openais_shape(serve, manager):
    base = serve(manager)
    response = httpx.post(
        base + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(base + "/v1/nothing").json()["error"]["code"] == "not_found"
