"""A bounded load test on loopback: 200 chat requests at concurrency 16, with random stops and lengths.

Every request gets a complete answer (equal to the manager's, greedy) or a 429; nothing hangs. Run again with
the primary backend (OpenVINO) failing mid-run: every request is still answered, by the fallback (PyTorch).
p50/p95 latency and throughput are printed in the test output.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass

import openai
import pytest

from muai_core import ModelManager
from tests.serve.conftest import MODEL

REQUESTS, CONCURRENCY, DEADLINE_S = 200, 16, 300
QUESTIONS = ["What is the capital of France?", "Count to five.", "Name a colour.", "Why is the sky blue?"]
LENGTHS = (4, 8, 16, 24)


@dataclass(frozen=True)
class Job:
    question: str
    max_tokens: int
    stop: str | None
    stream: bool


@dataclass
class Outcome:
    job: Job
    seconds: float
    text: str = ""
    tokens: int = 0
    backend: str = ""
    status: int = 200


def jobs(stops: list[str], seed: int) -> list[Job]:
    rng = random.Random(seed)
    return [
        Job(rng.choice(QUESTIONS), rng.choice(LENGTHS), rng.choice([None, *stops]), rng.random() < 0.5)
        for _ in range(REQUESTS)
    ]


async def ask(client: openai.AsyncOpenAI, job: Job) -> Outcome:
    started = time.perf_counter()
    arguments = {"model": MODEL, "messages": [{"role": "user", "content": job.question}], "max_tokens": job.max_tokens}
    if job.stop:
        arguments["stop"] = job.stop
    try:
        if job.stream:
            text, last = "", None
            async for chunk in await client.chat.completions.create(**arguments, stream=True):
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
                last = chunk
            assert last is not None and last.choices[0].finish_reason is not None, "the stream ended unfinished"
            usage, extra = last.usage, last.model_extra["muai"]
        else:
            answer = await client.chat.completions.create(**arguments)
            text, usage, extra = answer.choices[0].message.content, answer.usage, answer.model_extra["muai"]
    except openai.RateLimitError:
        return Outcome(job, time.perf_counter() - started, status=429)
    return Outcome(job, time.perf_counter() - started, text, usage.completion_tokens, extra["backend"])


async def run(base_url: str, work: list[Job], on_progress=None) -> tuple[list[Outcome], float]:
    """Every job, ``CONCURRENCY`` at a time; raises if the whole run passes ``DEADLINE_S``."""
    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="none", max_retries=0, timeout=120)
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in work:
        queue.put_nowait(job)
    outcomes: list[Outcome] = []

    async def worker() -> None:
        while not queue.empty():
            outcomes.append(await ask(client, queue.get_nowait()))
            if on_progress is not None:
                on_progress(len(outcomes))

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), DEADLINE_S)
    await client.close()
    return outcomes, time.perf_counter() - started


def report(title: str, outcomes: list[Outcome], seconds: float, capsys) -> None:
    latencies = sorted(o.seconds for o in outcomes)
    tokens = sum(o.tokens for o in outcomes)
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    rejected = sum(o.status == 429 for o in outcomes)
    with capsys.disabled():
        print(
            f"\n[load] {title}: {len(outcomes)} requests, concurrency {CONCURRENCY}: p50 {p50 * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms, {len(outcomes) / seconds:.1f} req/s, {tokens / seconds:.0f} tok/s, "
            f"{rejected} x 429, {seconds:.1f} s"
        )


def reference_stops(manager: ModelManager) -> list[str]:
    """Stop strings that occur in the model's answers: a few of their characters."""
    answers = [manager.generate(MODEL, messages=[{"role": "user", "content": q}], max_new_tokens=24) for q in QUESTIONS]
    return sorted({answer[6:8] for answer in answers if len(answer) >= 8})[:3]


def test_load_every_request_is_answered_as_the_manager_answers_it(serve, write_config, capsys):
    manager = ModelManager(config_path=write_config())
    base = serve(manager, preload=[MODEL])
    work = jobs(reference_stops(manager), seed=17)
    outcomes, seconds = asyncio.run(run(base, work))
    report("pytorch", outcomes, seconds, capsys)
    assert len(outcomes) == REQUESTS and all(o.status in (200, 429) for o in outcomes)
    expected = {}
    for outcome in outcomes:
        job = outcome.job
        if outcome.status == 200:
            key = (job.question, job.max_tokens, job.stop)
            if key not in expected:
                messages = [{"role": "user", "content": job.question}]
                expected[key] = manager.generate(MODEL, messages=messages, max_new_tokens=job.max_tokens, stop=job.stop)
            assert outcome.text == expected[key], job


def test_load_with_the_primary_backend_failing_mid_run_is_answered_by_fallback(
    serve, write_config, capsys, monkeypatch
):
    pytest.importorskip("muai_openvino", reason="the primary backend of this test is OpenVINO")
    manager = ModelManager(config_path=write_config(("openvino", "pytorch")))
    base = serve(manager, preload=[MODEL])
    openvino = manager.get_model(MODEL).backend
    assert openvino.name == "openvino"

    def broken(handle, request):  # fault injection: the OpenVINO engine fails from now on
        raise RuntimeError("injected OpenVINO fault")

    def progress(done: int) -> None:
        if done == REQUESTS // 4:
            monkeypatch.setattr(openvino, "generate", broken)

    outcomes, seconds = asyncio.run(run(base, jobs([], seed=18), progress))
    report("openvino failing after 50 requests, pytorch as fallback", outcomes, seconds, capsys)
    assert len(outcomes) == REQUESTS and all(o.status in (200, 429) for o in outcomes)
    backends = [o.backend for o in outcomes if o.status == 200]
    assert backends[0] == "openvino" and backends[-1] == "pytorch"
    assert manager.get_model(MODEL).backend_name == "pytorch"
