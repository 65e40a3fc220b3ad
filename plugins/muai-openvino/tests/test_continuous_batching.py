"""Many requests at once on the paged graph: shared batches, the prefix cache, the KV cache bound, faults."""

from __future__ import annotations

import random
from functools import partial

import pytest
import yaml

from muai_core import ModelManager, PerformanceMonitor
from muai_core.config import parse_config
from muai_core.errors import ConfigurationError, ResourceExhausted
from muai_core.resolver import Resolver
from muai_core.testing.threads import in_threads as run_in_threads
from muai_openvino.export.pipeline import export_model
from muai_openvino.settings import check_settings
from muai_pytorch.testing import build_tiny_model

concurrently = partial(run_in_threads, timeout_s=120)

PROMPTS = (
    "Hello world",
    "The capital of France is",
    "muai runs language models on many backends, and this prompt is longer than the others are",
    "a b c d e f g",
    "Once upon a time",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35",
)
HISTORY = " ".join(f"turn {i}: the user asked about topic {i} and the model answered at length." for i in range(12))


def manager(config: str, **kwargs) -> ModelManager:
    return ModelManager(config_path=config, monitor=PerformanceMonitor(), **kwargs)


@pytest.fixture(scope="session")
def long_store(tmp_path_factory):
    """A tiny llama with a context of 1024 tokens, exported FP32 and INT8."""
    root = tmp_path_factory.mktemp("long")
    build_tiny_model(root / "models" / "long-llama", "llama", context=1024)
    config = parse_config({"models_dir": str(root / "models")})
    for precision in ("FP32", "INT8"):
        export_model("long-llama", config, precision, str(root / "models" / "openvino"))
    return root


@pytest.fixture
def long_config(long_store, tmp_path):
    def write(**openvino) -> str:
        path = tmp_path / "long.yaml"
        path.write_text(yaml.safe_dump({"models_dir": str(long_store / "models"), "backend": {"openvino": openvino}}))
        return str(path)

    return write


def stats(ov_manager: ModelManager, name: str) -> dict:
    return ov_manager.get_model_info(name)["model_info"]["batching"]


@pytest.mark.parametrize(
    ("name", "precision"), [("gpt2", "FP32"), ("tiny-llama", "FP32"), ("tiny-llama", "FP16"), ("tiny-llama", "INT8")]
)
def test_concurrent_requests_share_batches_and_each_equals_its_run_alone(write_config, name, precision):
    # f32 arithmetic: a tiny random model's logits are so flat that bf16 rounding (the CPU's choice for INT8 where
    # it has bf16) changes its greedy choice, batched or not.
    config = write_config({"openvino": {"precision": precision, "inference_precision": "f32"}})
    alone = manager(config, backend="openvino")
    lengths = [24, 40, 8, 33, 17, 60]
    expected = [
        alone.generate_result(name, prompt, max_new_tokens=n, ignore_eos=True).token_ids
        for prompt, n in zip(PROMPTS, lengths, strict=True)
    ]
    together = manager(config, backend="openvino")
    together.load_model(name)
    results = concurrently(
        len(PROMPTS),
        lambda i: together.generate_result(name, PROMPTS[i], max_new_tokens=lengths[i], ignore_eos=True),
        stagger_s=0.003,  # requests join while others decode
    )
    assert [r.token_ids for r in results] == expected
    figures = stats(together, name)
    assert figures["peak_running"] > 1, "requests never ran in one batch"
    assert figures["batches"] < sum(lengths), "every step ran alone"
    assert figures["running"] == figures["waiting"] == figures["kv_blocks_in_use"] == 0
    assert all(r.backend == "openvino" for r in results)
    info = together.get_model_info(name)["model_info"]
    assert info["attention"] == "paged"
    if precision == "FP32":  # f32 end to end, KV cache included, on every CPU (genai's PagedAttention refuses
        assert info["properties"]["KV_CACHE_PRECISION"] == "f32"  # an f32 cache where the CPU has bf16)


def test_a_batch_of_prompts_runs_as_one_batch(write_config):
    config = write_config()
    expected = [manager(config, backend="openvino").generate("gpt2", p, max_new_tokens=16) for p in PROMPTS]
    ov_manager = manager(config, backend="openvino")
    assert ov_manager.generate("gpt2", list(PROMPTS), max_new_tokens=16) == expected
    assert stats(ov_manager, "gpt2")["peak_running"] > 1


def test_a_long_prompt_is_fed_in_chunks_with_the_same_answer(long_config):
    prompt = " ".join(PROMPTS) * 2
    reference = manager(long_config(), backend="openvino").generate_result(
        "long-llama", prompt, max_new_tokens=12, ignore_eos=True
    )
    chunked = manager(long_config(max_batch_tokens=16, prefix_cache=False), backend="openvino")
    result = chunked.generate_result("long-llama", prompt, max_new_tokens=12, ignore_eos=True)
    assert result.prompt_tokens > 3 * 16 and result.token_ids == reference.token_ids
    assert stats(chunked, "long-llama")["batches"] >= result.prompt_tokens // 16 + 11


@pytest.mark.parametrize("precision", ["FP32", "INT8"])
def test_the_prefix_cache_reuses_a_chat_history_with_identical_tokens(long_config, precision):
    turn = [{"role": "user", "content": HISTORY}, {"role": "assistant", "content": "Noted."}]
    second = [*turn, {"role": "user", "content": "And the weather?"}]
    cold = manager(long_config(precision=precision, prefix_cache=False, inference_precision="f32"), backend="openvino")
    warm = manager(long_config(precision=precision, inference_precision="f32"), backend="openvino")
    for ov_manager in (cold, warm):
        first = ov_manager.generate_result("long-llama", messages=turn[:1], max_new_tokens=4)
    expected = cold.generate_result("long-llama", messages=second, max_new_tokens=20, ignore_eos=True)
    result = warm.generate_result("long-llama", messages=second, max_new_tokens=20, ignore_eos=True)
    assert result.prompt_tokens >= 300
    assert result.token_ids == expected.token_ids
    figures = stats(warm, "long-llama")
    assert figures["prefix_blocks_reused"] * figures["kv_block_tokens"] >= first.prompt_tokens - 2 * 32
    assert stats(cold, "long-llama")["prefix_blocks_reused"] == 0


def test_the_prefix_cache_stays_correct_when_its_blocks_are_evicted(long_config):
    # room for about two sequences: every new prompt evicts cached blocks of earlier ones
    check = manager(long_config(prefix_cache=False), backend="openvino")
    ov_manager = manager(long_config(kv_cache_bytes="256KiB"), backend="openvino")
    rng = random.Random(7)
    for _ in range(12):
        prompt = HISTORY[: rng.randrange(40, len(HISTORY))] + rng.choice(PROMPTS)
        got = ov_manager.generate_result("long-llama", prompt, max_new_tokens=6, ignore_eos=True)
        expected = check.generate_result("long-llama", prompt, max_new_tokens=6, ignore_eos=True)
        assert got.token_ids == expected.token_ids
    figures = stats(ov_manager, "long-llama")
    assert figures["prefix_blocks_reused"] > 0 and figures["kv_blocks_cached"] < 12 * 8
    assert figures["kv_blocks_allocated"] <= figures["kv_blocks_max"]


def test_a_cancelled_stream_frees_its_blocks_at_once(long_config):
    ov_manager = manager(long_config(prefix_cache=False), backend="openvino")
    stream = ov_manager.stream("long-llama", "Hello", max_new_tokens=200, ignore_eos=True)
    for count, _ in enumerate(stream, 1):
        if count == 5:
            assert stats(ov_manager, "long-llama")["kv_blocks_in_use"] > 0
            break
    figures = stats(ov_manager, "long-llama")
    assert figures["kv_blocks_in_use"] == 0 and figures["running"] == 0
    assert stream.result is not None and stream.result.finish_reason == "stopped"


def test_requests_beyond_the_kv_cache_wait_and_beyond_the_queue_are_refused(long_config):
    # 64 KiB of the tiny llama's f32 cache: 8 blocks, one sequence of 5 blocks at a time, not two
    config = long_config(kv_cache_bytes="64KiB", max_waiting=1, prefix_cache=False)
    ov_manager = manager(config, backend="openvino")
    ov_manager.load_model("long-llama")
    blocks = stats(ov_manager, "long-llama")["kv_blocks_max"]
    tokens = (blocks // 2 + 1) * stats(ov_manager, "long-llama")["kv_block_tokens"] - 10
    results = concurrently(
        4, lambda i: ov_manager.generate_result("long-llama", "Hello", max_new_tokens=tokens, ignore_eos=True)
    )
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    answered = [r for r in results if not isinstance(r, Exception)]
    assert len(refused) + len(answered) == 4 and refused and len(answered) >= 2, results
    assert "retry later" in str(refused[0])
    assert max(r.queue_wait_s for r in answered) > 0.01, "the second request did not wait for room"
    assert stats(ov_manager, "long-llama")["peak_running"] == 1


def test_a_request_longer_than_the_kv_cache_runs_on_pytorch_and_others_stay(long_config):
    ov_manager = manager(long_config(kv_cache_bytes="64KiB"), backend="openvino")
    ov_manager.load_model("long-llama")
    tokens = stats(ov_manager, "long-llama")["kv_blocks_max"] * stats(ov_manager, "long-llama")["kv_block_tokens"]
    long = ov_manager.generate_result("long-llama", "Hello", max_new_tokens=tokens, ignore_eos=True)
    assert long.backend == "pytorch"
    [*_, detour] = ov_manager.explain("long-llama")
    assert detour.outcome == "unsupported" and "KV cache blocks" in detour.reason
    assert ov_manager.generate_result("long-llama", "Hello", max_new_tokens=4).backend == "openvino"


def test_a_failure_with_sequences_in_flight_fails_each_over_and_resumes(write_config, monkeypatch):
    config = write_config()
    reference = manager(config, backend="pytorch")
    expected = [
        reference.generate_result("tiny-llama", p, max_new_tokens=30, ignore_eos=True).token_ids for p in PROMPTS
    ]
    ov_manager = manager(config, backend="openvino")
    handle = ov_manager.load_model("tiny-llama").handle
    real, calls = handle.request, []

    class FailingOnce:
        """The infer request, failing on its 12th call (mid-decode with every sequence running)."""

        def __getattr__(self, name):
            return getattr(real, name)

        def infer(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 12:
                raise RuntimeError("injected: the device was lost")
            return real.infer(*args, **kwargs)

    handle.request = FailingOnce()
    reloads = []
    load = Resolver.load
    monkeypatch.setattr(Resolver, "load", lambda self, *a, **k: reloads.append(k) or load(self, *a, **k))
    results = concurrently(
        len(PROMPTS),
        lambda i: ov_manager.generate_result("tiny-llama", PROMPTS[i], max_new_tokens=30, ignore_eos=True),
    )
    assert [r.token_ids for r in results] == expected
    assert {r.backend for r in results} >= {"pytorch"}
    events = ov_manager.performance_monitor.fallback_events()
    assert events and all("device was lost" in e.reason for e in events)
    assert len(reloads) == 1, "requests that failed together loaded the fallback model more than once"


def test_fp32_with_another_compute_precision_runs_the_paged_graph(write_config):
    ov_manager = manager(
        write_config({"openvino": {"inference_precision": "bf16", "enable_fallback": False}}), backend="openvino"
    )
    assert ov_manager.generate_result("gpt2", "Hello", max_new_tokens=4).backend == "openvino"
    info = ov_manager.get_model_info("gpt2")["model_info"]
    assert info["attention"] == "paged" and info["properties"].get("KV_CACHE_PRECISION") != "f32"


def test_batching_settings_are_checked():
    check_settings({"kv_cache_bytes": "2GiB", "max_batch_tokens": 64, "max_waiting": 0, "prefix_cache": False})
    check_settings({"kv_cache_bytes": 64 << 20})
    for bad, message in (
        ({"kv_cache_bytes": "lots"}, "kv_cache_bytes must be a size of at least 64KiB"),
        ({"kv_cache_bytes": 1000}, "kv_cache_bytes must be a size"),
        ({"kv_cache_bytes": "3 parsecs"}, "kv_cache_bytes must be a size"),
        ({"max_batch_tokens": 0}, "max_batch_tokens must be an int from 1"),
        ({"max_waiting": -1}, "max_waiting must be an int from 0"),
        ({"max_waiting": True}, "max_waiting must be an int"),
        ({"prefix_cache": "yes"}, "prefix_cache must be true or false"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            check_settings(bad)
