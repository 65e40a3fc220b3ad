"""The openvino backend on real exported tiny models: parity with PyTorch, devices, faults, fallback."""

from __future__ import annotations

import ctypes
import json
import logging
import mmap
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from muai_core import ModelManager, PerformanceMonitor
from muai_core.errors import ConfigurationError, InferenceError, InvalidInputError, ModelLoadError
from muai_core.plugins import default_registry
from muai_core.text_codec import TextCodec
from muai_openvino.export.pipeline import file_records
from muai_openvino.export_layout import MANIFEST
from muai_openvino.mapped_weights import file_ranges, read_mapped, released_while
from muai_openvino.settings import check_settings

NAMES = ("gpt2", "tiny-llama")
#: One-shot CLI runs of the exit test: a crash at interpreter shutdown did not happen every time.
EXIT_RUNS = 5
PROMPTS = ("Hello world", "The capital of France is", "muai runs language models")


def manager(config: str, **kwargs) -> ModelManager:
    return ModelManager(config_path=config, monitor=PerformanceMonitor(), **kwargs)


def test_registered_and_available():
    record = {r.name: r for r in default_registry().records()}["openvino"]
    assert record.distribution == "muai-openvino"
    assert default_registry().backend("openvino").available().available


@pytest.mark.parametrize("name", NAMES)
def test_greedy_tokens_equal_pytorch(write_config, name):
    config = write_config()
    ov_manager, pt_manager = manager(config, backend="openvino"), manager(config, backend="pytorch")
    for prompt in PROMPTS:
        ov_result = ov_manager.generate_result(name, prompt, max_new_tokens=24)
        pt_result = pt_manager.generate_result(name, prompt, max_new_tokens=24)
        assert ov_result.token_ids == pt_result.token_ids
        assert ov_result.text == pt_result.text and ov_result.finish_reason == pt_result.finish_reason
    assert ov_manager.get_model(name).backend_name == "openvino"


@pytest.mark.parametrize("name", NAMES)
def test_request_controls_give_the_same_result_as_pytorch(write_config, name):
    config = write_config()
    ov_manager, pt_manager = manager(config, backend="openvino"), manager(config, backend="pytorch")
    for prompt in PROMPTS:
        free = pt_manager.generate_result(name, prompt, max_new_tokens=24, ignore_eos=True)
        text = free.completion  # two whole characters after its first one
        stop = next(text[i : i + 2] for i in range(1, len(text) - 1) if "\ufffd" not in text[i : i + 2])
        first = free.token_ids[0]
        for kwargs in (
            {"stop": [stop, "\n\n"]},
            {"repetition_penalty": 1.3},
            {"repetition_penalty": 0.7, "do_sample": True, "top_k": 1},
            {"stop_token_ids": [first], "min_new_tokens": 4},
        ):
            ov_result = ov_manager.generate_result(name, prompt, max_new_tokens=24, ignore_eos=True, **kwargs)
            pt_result = pt_manager.generate_result(name, prompt, max_new_tokens=24, ignore_eos=True, **kwargs)
            assert ov_result.token_ids == pt_result.token_ids, kwargs
            assert (ov_result.text, ov_result.finish_reason) == (pt_result.text, pt_result.finish_reason), kwargs
            if "stop" in kwargs:
                assert ov_result.finish_reason == "stop" and stop not in ov_result.completion


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_pytorch(write_config, name):
    config = write_config()
    ids = {"input_ids": np.array([[5, 17, 42, 99, 3], [1, 2, 3, 4, 5]])}
    ov_logits = manager(config, backend="openvino").forward(name, ids)["logits"]
    pt_logits = manager(config, backend="pytorch").forward(name, ids)["logits"]
    assert ov_logits.dtype == pt_logits.dtype == np.float32 and ov_logits.shape == pt_logits.shape
    np.testing.assert_allclose(ov_logits, pt_logits, atol=1e-4)


@pytest.mark.parametrize("precision", ["FP16", "INT8"])
def test_lower_precisions_load_and_mostly_agree(write_config, precision):
    config = write_config({"openvino": {"precision": precision}})
    ov_manager = manager(config, backend="openvino")
    result = ov_manager.generate_result("tiny-llama", "Hello world", max_new_tokens=8)
    assert result.new_tokens == 8
    info = ov_manager.get_model_info("tiny-llama")["model_info"]
    assert info["precision"] == precision and info["ir_path"].endswith(f"tiny-llama-{precision.lower()}")


def test_sampling_is_seeded_and_top_k_1_is_greedy(write_config):
    ov_manager = manager(write_config(), backend="openvino")
    run = lambda **kw: ov_manager.generate_result("tiny-llama", "Hello", max_new_tokens=16, **kw).token_ids  # noqa: E731
    assert run(temperature=1.5, seed=3) == run(temperature=1.5, seed=3)
    assert run(temperature=1.5, seed=3) != run(temperature=1.5, seed=4)
    assert run(top_k=1, seed=5) == run()


def test_streaming_and_stop(write_config):
    ov_manager = manager(write_config(), backend="openvino")
    pieces: list[str] = []
    result = ov_manager.generate_result("gpt2", "Hello", max_new_tokens=12, streamer=pieces.append)
    assert "".join(pieces) == result.completion
    stopped = ov_manager.generate_result("gpt2", "Hello", max_new_tokens=12, streamer=lambda piece: False)
    assert stopped.finish_reason == "stopped" and stopped.new_tokens < 12


def test_eos_stops_generation(write_config):
    ov_manager = manager(write_config(), backend="openvino")
    first = ov_manager.generate_result("gpt2", "Hello", max_new_tokens=5).token_ids[0]
    ov_manager.get_model("gpt2").handle.eos_ids = frozenset({first})
    result = ov_manager.generate_result("gpt2", "Hello", max_new_tokens=5)
    assert (result.finish_reason, result.token_ids) == ("eos", (first,))


def test_chat_template_matches_transformers(store, write_config):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(store / "models" / "gpt2")
    codec = TextCodec(store / "models" / "openvino" / "gpt2", hint="")
    messages = [{"role": "user", "content": "Hi there"}]
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    from muai_core.contracts import GenerationRequest

    assert codec.prompt_text(GenerationRequest("Hi there", chat=True)) == expected
    result = manager(write_config(), backend="openvino").generate_result(
        "gpt2", "Hi there", max_new_tokens=2, chat=True
    )
    assert result.text == result.completion, "with chat=True the text is the answer alone"


def test_context_overflow_is_refused(write_config):
    with pytest.raises(InvalidInputError, match="context"):
        manager(write_config(), backend="openvino").generate("gpt2", "word " * 400, max_new_tokens=1)


def test_forward_beyond_the_context_is_refused_without_a_fallback(write_config):
    ov_manager = manager(write_config({"openvino": {"enable_fallback": True}}), backend="openvino")
    with pytest.raises(InvalidInputError, match="input_ids has 1000 positions but the model's context holds 128"):
        ov_manager.forward("gpt2", {"input_ids": [[1] * 1000]})
    assert ov_manager.performance_monitor.fallback_events() == []


@pytest.fixture
def ir_copy(store, tmp_path):
    """A copy of the gpt2 FP32 export whose config.json a test may edit; returns (directory, config path)."""
    target = tmp_path / "ov" / "gpt2"
    shutil.copytree(store / "models" / "openvino" / "gpt2", target, ignore=shutil.ignore_patterns("compiled-cache"))
    return target, write_config_with(tmp_path, target)


def write_config_with(tmp_path: Path, ir: Path) -> str:
    path = tmp_path / "ir-copy.yaml"
    path.write_text(f"models: {{gpt2: {{openvino_path: '{ir}'}}}}\nbackend: {{openvino: {{enable_fallback: false}}}}\n")
    return str(path)


def edit_config(directory: Path, **changes) -> None:
    """Change the export's config.json as a hand edit would, and record it in the manifest as the export did."""
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"].update(file_records(directory, ["config.json"]))
    (directory / MANIFEST).write_text(json.dumps(manifest))


def test_a_nonsensical_context_length_is_a_load_error_naming_the_field(ir_copy):
    directory, config = ir_copy
    edit_config(directory, max_position_embeddings=-5)
    with pytest.raises(ModelLoadError, match="max_position_embeddings in the config.json of 'gpt2' must be a positive"):
        manager(config, backend="openvino").load_model("gpt2")


def test_a_budget_beyond_any_use_allocates_only_what_the_sequence_uses(write_config, ir_copy):
    directory, config = ir_copy
    edit_config(directory, n_positions=None)  # no context length: nothing bounds the budget
    ov_manager = manager(config, backend="openvino")
    pieces: list[str] = []
    result = ov_manager.generate_result(
        "gpt2",
        LONG_PROMPT,
        max_new_tokens=10**5,
        ignore_eos=True,
        streamer=lambda p: pieces.append(p) or len(pieces) < 70,
    )
    handle = ov_manager.get_model("gpt2").handle
    cache, blocks_for = handle.paged_cache, handle.batcher.engine.pool.blocks_for
    assert result.finish_reason == "stopped" and cache.blocks <= 2 * blocks_for(result.prompt_tokens + 70)
    # the blocks grew during the answer, keeping what the sequence had cached
    assert blocks_for(result.prompt_tokens) < cache.blocks
    reference = manager(write_config(), backend="openvino").generate_result(
        "gpt2", LONG_PROMPT, max_new_tokens=len(result.token_ids), ignore_eos=True
    )
    assert result.token_ids == reference.token_ids


def test_config_is_read_back_from_the_compiled_model(write_config):
    config = write_config({"openvino": {"num_streams": 2, "performance_hint": "throughput"}})
    ov_manager = manager(config, backend="openvino")
    ov_manager.load_model("gpt2")
    properties = ov_manager.get_model_info("gpt2")["model_info"]["properties"]
    assert (properties["NUM_STREAMS"], properties["PERFORMANCE_HINT"]) == ("2", "THROUGHPUT")
    single = manager(write_config({"openvino": {"inference_num_threads": 1}}), backend="openvino")
    single.load_model("gpt2")
    properties = single.get_model_info("gpt2")["model_info"]["properties"]
    assert (properties["INFERENCE_NUM_THREADS"], properties["PERFORMANCE_HINT"]) == ("1", "LATENCY")


def test_model_info_names_each_execution_device_as_openvino_lists_them(write_config):
    ov_manager = manager(write_config(), backend="openvino")
    ov_manager.load_model("gpt2")
    handle = ov_manager.get_model("gpt2").handle
    assert handle.execution_devices == ("CPU",)
    # What a model compiled for MULTI:GPU.0,CPU reports, and how the property reads once printed.
    handle.execution_devices = ("GPU.0", "CPU")
    handle.properties["EXECUTION_DEVICES"] = "['GPU.0', 'CPU']"
    assert ov_manager.get_model_info("gpt2")["model_info"]["device"] == "GPU.0,CPU"


@pytest.fixture
def own_llama(store, tmp_path) -> str:
    """A cache_dir holding this test's own copy of the tiny-llama export, mapped by no other test's model."""
    shutil.copytree(store / "models" / "openvino" / "tiny-llama", tmp_path / "own" / "tiny-llama")
    return str(tmp_path / "own")


@pytest.mark.parametrize(
    "section",
    [
        {"precison": "INT8"},
        {"device": "TPU"},
        {"num_streams": 0},
        {"performance_hint": "FAST"},
        {"inference_num_threads": -1},
        {"kv_cache_precision": "f8"},
        {"precision": "INT2"},
        {"mmap": "no"},
        {"attention": "flash"},
        {"cache_dir": ""},
        {"compile_cache_dir": 3},
        {"dynamic_quantization_group_size": -1},
        {"dynamic_quantization_group_size": "32"},
        {"dynamic_quantization_group_size": True},
        {"dynamic_quantization_group_size": 1 << 21},
    ],
)
def test_every_bad_setting_names_its_key_and_has_a_hint(section):
    with pytest.raises(ConfigurationError) as info:
        check_settings(section)
    assert next(iter(section)) in info.value.reason and info.value.hint


def test_doctor_reports_a_bad_section_without_loading_a_model(tmp_path, capsys):
    from muai_core.cli import main

    config = tmp_path / "system.yaml"
    config.write_text("backend:\n  openvino:\n    precison: INT8\n")
    assert main(["--config", str(config), "doctor"]) == 2
    assert "problem: config: unknown key(s) precison at backend.openvino" in capsys.readouterr().out


def test_mmap_off_reads_the_weights_into_memory_with_the_same_answers(write_config, own_llama):
    answers = {}
    for on in (True, False):
        ov_manager = manager(write_config({"openvino": {"mmap": on, "cache_dir": own_llama}}), backend="openvino")
        answers[on] = ov_manager.generate_result("tiny-llama", "Hello", max_new_tokens=8, ignore_eos=True).token_ids
        assert is_mapped(ov_manager.get_model("tiny-llama").handle.directory / "openvino_model.bin") is on
        ov_manager.unload_model("tiny-llama")
    assert answers[True] == answers[False]
    with pytest.raises(ConfigurationError, match="mmap must be true or false"):
        manager(write_config({"openvino": {"mmap": "no"}}), backend="openvino").load_model("gpt2")


def test_mapped_weights_leave_the_process_but_stay_in_the_page_cache(write_config, own_llama):
    weights = Path(own_llama) / "tiny-llama" / "openvino_model.bin"
    descriptor = os.open(weights, os.O_RDONLY)
    os.fsync(descriptor)  # clean pages, like those of a file exported earlier: MADV_PAGEOUT would evict them
    os.close(descriptor)
    assert page_cache_share(weights) > 0.9
    ov_manager = manager(write_config({"openvino": {"cache_dir": own_llama}}), backend="openvino")
    ov_manager.load_model("tiny-llama")
    assert mapped_resident_bytes(weights) < 0.25 * weights.stat().st_size
    assert page_cache_share(weights) > 0.9  # so the pages the runtime reads in place come back without I/O
    assert ov_manager.generate_result("tiny-llama", "Hello", max_new_tokens=4, ignore_eos=True).new_tokens == 4


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory) -> Path:
    """A llama wide enough that INT8 compresses its layers (the tiny one's are below the size it compresses)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from muai_core.config import parse_config
    from muai_openvino.export.pipeline import export_model
    from muai_pytorch.testing import build_tokenizer

    root = tmp_path_factory.mktemp("wide")
    source = root / "models" / "wide-llama"
    tokenizer = AutoTokenizer.from_pretrained(build_tokenizer(source))
    eos, vocab = tokenizer.eos_token_id, len(tokenizer)
    torch.manual_seed(0)
    shape = {"hidden_size": 256, "intermediate_size": 1024, "num_attention_heads": 4, "num_key_value_heads": 2}
    config = LlamaConfig(num_hidden_layers=2, vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, **shape)
    LlamaForCausalLM(config).eval().save_pretrained(source)
    export_model("wide-llama", parse_config({"models_dir": str(root / "models")}), "INT8", str(root / "ov"))
    return root


def test_the_first_generation_does_not_bring_the_weights_file_back(wide_llama, tmp_path):
    # The CPU plugin copies compressed weights on the first inference: load runs it while releasing the file's
    # pages, so the process does not hold the file's pages and the copies at once (its peak memory).
    config = tmp_path / "system.yaml"
    backend = {"cache_dir": str(wide_llama / "ov"), "precision": "INT8"}
    config.write_text(yaml.safe_dump({"models_dir": str(wide_llama / "models"), "backend": {"openvino": backend}}))
    ov_manager = manager(str(config), backend="openvino")
    weights = ov_manager.load_model("wide-llama").handle.directory / "openvino_model.bin"
    assert weights.stat().st_size > 2 << 20
    assert mapped_resident_bytes(weights) < 0.25 * weights.stat().st_size  # released when load's warm-up ended
    assert ov_manager.generate_result("wide-llama", "Hello there", max_new_tokens=4, ignore_eos=True).new_tokens == 4
    if "avx512f" in cpu_flags():  # there the plugin copies INT8 weights (elsewhere its kernels may read in place)
        assert mapped_resident_bytes(weights) < 0.25 * weights.stat().st_size


def cpu_flags() -> set[str]:
    """The flags of this machine's first CPU in /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_mapped_pages_are_released_while_a_block_reads_them(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(64 * mmap.PAGESIZE))
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        with released_while(tuple(file_ranges(path)), period_s=0.001):
            sum(mapped[i] for i in range(0, len(mapped), mmap.PAGESIZE))  # every page resident
            deadline = time.monotonic() + 5
            while mapped_resident_bytes(path) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert mapped_resident_bytes(path) == 0  # released inside the block, not only at its end
        assert mapped[: len(mapped)] == path.read_bytes()  # read back from the page cache


def test_a_load_releases_only_the_weights_it_mapped_itself(store):
    # Another handle of the same export may be unloaded meanwhile and its addresses reused: advising them with
    # MADV_DONTNEED would zero other memory (a crash under load/unload churn).
    import openvino as ov

    weights = store / "models" / "openvino" / "tiny-llama" / "openvino_model.bin"
    with weights.open("rb") as file, mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ):
        others = file_ranges(weights)  # a mapping of the same file that is not this load's
        model, mine = read_mapped(ov.Core(), weights.with_suffix(".xml"), weights, mmap=True)
        assert others and mine and set(mine).isdisjoint(others)
        assert set(mine) <= file_ranges(weights)
        del model


def is_mapped(path: Path) -> bool:
    """Whether this process maps ``path``."""
    return str(path.resolve()) in Path("/proc/self/maps").read_text()


def mapped_resident_bytes(path: Path) -> int:
    """Bytes of ``path`` this process has mapped and resident (``Rss`` of its mappings in smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):
            inside = len(fields) == 6 and fields[5] == str(path.resolve())
        elif inside and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def page_cache_share(path: Path) -> float:
    """The share of ``path``'s pages in the kernel's page cache (mincore on a fresh mapping of our own)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size, page = path.stat().st_size, mmap.PAGESIZE
    with path.open("rb") as file:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, file.fileno(), 0)
    assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    try:
        pages = (ctypes.c_ubyte * (-(-size // page)))()
        assert libc.mincore(address, size, pages) == 0, ctypes.get_errno()
        return sum(flag & 1 for flag in pages) / len(pages)
    finally:
        libc.munmap(address, size)


def test_fp32_means_fp32_end_to_end_on_every_cpu(write_config):
    # On CPUs with AVX512-BF16 or AMX the CPU plugin's default is bf16: FP32 must override it everywhere.
    ov_manager = manager(write_config(), backend="openvino")
    ov_manager.forward("gpt2", {"input_ids": [[1, 2, 3]]})
    info = ov_manager.get_model_info("gpt2")["model_info"]
    assert (info["properties"]["KV_CACHE_PRECISION"], info["inference_precision"]) == ("f32", "f32")
    forward_graph = ov_manager.get_model("gpt2").handle.full_logits_request.get_compiled_model()
    assert forward_graph.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"


def test_compressed_exports_report_the_precision_the_cpu_computes_in(write_config):
    import openvino as ov

    cpu_default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    ov_manager = manager(write_config({"openvino": {"precision": "INT8"}}), backend="openvino")
    ov_manager.load_model("gpt2")
    assert ov_manager.get_model_info("gpt2")["model_info"]["inference_precision"] == cpu_default


@pytest.mark.parametrize("precision", ["INT8", "FP16"])
def test_f32_arithmetic_on_compressed_weights_keeps_the_kv_cache_in_f32(write_config, precision):
    # A u8 cache rounds a verify step's rows (prompt lookup) otherwise than steps of one token: near ties flip.
    section = {"precision": precision, "inference_precision": "f32"}
    ov_manager = manager(write_config({"openvino": section}), backend="openvino")
    ov_manager.load_model("gpt2")
    info = ov_manager.get_model_info("gpt2")["model_info"]
    assert (info["properties"]["KV_CACHE_PRECISION"], info["inference_precision"]) == ("f32", "f32")
    section["kv_cache_precision"] = "u8"  # still the user's to choose
    ov_manager = manager(write_config({"openvino": section}), backend="openvino")
    ov_manager.load_model("gpt2")
    assert ov_manager.get_model_info("gpt2")["model_info"]["properties"]["KV_CACHE_PRECISION"] == "u8"


@pytest.mark.parametrize("group", [None, 0, 64])
def test_dynamic_quantization_group_size_reaches_the_compiled_model(write_config, group):
    import openvino as ov

    section = {"precision": "INT8"} | ({} if group is None else {"dynamic_quantization_group_size": group})
    ov_manager = manager(write_config({"openvino": section}), backend="openvino")
    ov_manager.load_model("gpt2")
    default = ov.Core().get_property("CPU", "DYNAMIC_QUANTIZATION_GROUP_SIZE")
    reported = ov_manager.get_model_info("gpt2")["model_info"]["properties"]["DYNAMIC_QUANTIZATION_GROUP_SIZE"]
    assert reported == str(default if group is None else group)


LONG_PROMPT = "Hello world, this is a longer prompt to cross a block boundary "


@pytest.mark.parametrize("name", NAMES)
def test_paged_and_stateful_attention_give_pytorchs_tokens_across_kv_blocks(write_config, name):
    pt_result = manager(write_config(), backend="pytorch").generate_result(
        name, LONG_PROMPT, max_new_tokens=70, ignore_eos=True
    )
    for attention in ("paged", "stateful"):
        ov_manager = manager(write_config({"openvino": {"attention": attention}}), backend="openvino")
        result = ov_manager.generate_result(name, LONG_PROMPT, max_new_tokens=70, ignore_eos=True)
        assert ov_manager.get_model_info(name)["model_info"]["attention"] == attention
        assert result.token_ids == pt_result.token_ids
        if attention == "paged":
            handle = ov_manager.get_model(name).handle
            cache, blocks_for = handle.paged_cache, handle.batcher.engine.pool.blocks_for
    # the answer ran on blocks beyond the prompt's
    assert blocks_for(result.prompt_tokens) < blocks_for(result.prompt_tokens + 70) <= cache.blocks
    with pytest.raises(ConfigurationError, match="attention must be one of paged, stateful"):
        manager(write_config({"openvino": {"attention": "flash"}}), backend="openvino").load_model(name)


def test_a_sequence_does_not_see_what_an_earlier_one_left_in_the_blocks(write_config):
    config = write_config()
    fresh = manager(config, backend="openvino").generate_result("tiny-llama", "Hello", max_new_tokens=12)
    reused = manager(config, backend="openvino")
    reused.generate_result("tiny-llama", LONG_PROMPT, max_new_tokens=70, ignore_eos=True)
    assert reused.generate_result("tiny-llama", "Hello", max_new_tokens=12).token_ids == fresh.token_ids


def test_a_kv_cache_that_cannot_be_allocated_is_an_inference_error(write_config, monkeypatch):
    from muai_openvino.paged import PagedCache

    def out_of_memory(self, request, tokens, keep=0):
        raise RuntimeError("Exception from src/core/src/runtime/allocator.cpp: cannot allocate memory")

    monkeypatch.setattr(PagedCache, "reserve", out_of_memory)
    strict = manager(write_config({"openvino": {"enable_fallback": False}}), backend="openvino")
    with pytest.raises(InferenceError, match="cannot allocate the KV cache for a sequence of") as info:
        strict.generate("gpt2", "Hello", max_new_tokens=4)
    assert "ask for fewer new tokens" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


def test_a_failed_paged_attention_conversion_runs_the_stateful_graph(write_config, monkeypatch, caplog):
    from muai_openvino import runtime

    convert = runtime.to_paged_attention

    def convert_then_fail(ov_model):
        convert(ov_model)  # the graph is changed before the failure
        raise RuntimeError("SDPAToPagedAttention: unexpected pattern")

    monkeypatch.setattr(runtime, "to_paged_attention", convert_then_fail)
    ov_manager = manager(write_config(), backend="openvino")
    with caplog.at_level(logging.WARNING):
        result = ov_manager.generate_result("gpt2", "Hello world", max_new_tokens=12)
    assert "PagedAttention unavailable (SDPAToPagedAttention: unexpected pattern)" in caplog.text
    assert ov_manager.get_model_info("gpt2")["model_info"]["attention"] == "stateful"
    expected = manager(write_config(), backend="pytorch").generate_result("gpt2", "Hello world", max_new_tokens=12)
    assert result.token_ids == expected.token_ids


def test_compiled_blobs_are_cached(write_config, tmp_path):
    config = write_config({"openvino": {"compile_cache_dir": str(tmp_path / "blobs")}})
    manager(config, backend="openvino").load_model("gpt2")
    assert any((tmp_path / "blobs").iterdir())


@pytest.fixture
def broken_store(store, tmp_path):
    """A copy of the gpt2 FP32 export that a test may damage; config points openvino at it."""
    target = tmp_path / "ov" / "gpt2"
    shutil.copytree(store / "models" / "openvino" / "gpt2", target, ignore=shutil.ignore_patterns("compiled-cache"))
    return target


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / "openvino_model.bin").unlink(),
        lambda d: (d / "openvino_model.xml").write_text("<net>garbage"),
        lambda d: (d / "openvino_model.bin").write_bytes((d / "openvino_model.bin").read_bytes()[:100]),
        lambda d: (d / "tokenizer.json").write_text("{"),
        lambda d: (d / "muai-export.json").write_text("not json"),
    ],
    ids=["missing-bin", "garbage-xml", "truncated-bin", "garbage-tokenizer", "garbage-manifest"],
)
def test_damaged_ir_falls_back_or_fails_cleanly(write_config, broken_store, damage, caplog):
    damage(broken_store)
    cache = str(broken_store.parent)
    with caplog.at_level(logging.WARNING):
        loaded = manager(write_config({"openvino": {"cache_dir": cache}}), backend="openvino").load_model("gpt2")
    assert loaded.backend_name == "pytorch" and loaded.attempts[0].outcome == "failed"
    strict = write_config({"openvino": {"cache_dir": cache, "enable_fallback": False}})
    with pytest.raises(ModelLoadError) as info:
        manager(strict, backend="openvino").load_model("gpt2")
    assert "muai export gpt2" in str(info.value)


def test_a_model_that_exists_nowhere_is_not_offered_an_export(write_config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    strict = manager(write_config({"openvino": {"enable_fallback": False}}), backend="openvino")
    with pytest.raises(ModelLoadError, match="no OpenVINO export of 'no-such-model' in .*no local model to export"):
        strict.load_model("no-such-model")
    with pytest.raises(ModelLoadError) as info:
        manager(write_config(), backend="openvino").load_model("no-such-model")
    message = str(info.value)
    assert message.startswith("model 'no-such-model' not found locally") and "muai export" not in message


def test_missing_export_names_the_file_and_the_command(write_config, tmp_path):
    strict = write_config({"openvino": {"cache_dir": str(tmp_path / "none"), "enable_fallback": False}})
    with pytest.raises(ModelLoadError) as info:
        manager(strict, backend="openvino").load_model("gpt2")
    message = str(info.value)
    assert "openvino_model.xml" in message and "muai export gpt2 --precision FP32" in message


class NaNLogitsFrom:
    """Fault injection: the real infer request, its logits poisoned with NaN from the ``step``-th inference on."""

    def __init__(self, real, step: int = 1):
        self.real, self.step, self.steps = real, step, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def infer(self, *args, **kwargs):
        self.steps += 1
        logits = np.array(self.real.infer(*args, **kwargs)["logits"])
        return {"logits": np.full_like(logits, np.nan) if self.steps >= self.step else logits}


def test_nan_logits_are_an_inference_failure_that_falls_back(write_config, monkeypatch):
    ov_manager = manager(write_config(), backend="openvino")
    handle = ov_manager.load_model("gpt2").handle
    handle.request = NaNLogitsFrom(handle.request)
    text = ov_manager.generate("gpt2", "Hello", max_new_tokens=4)
    assert text.startswith("Hello")
    assert ov_manager.get_model("gpt2").backend_name == "pytorch"
    [event] = ov_manager.performance_monitor.fallback_events("gpt2")
    assert (event.from_backend, event.stage) == ("openvino", "generate") and "non-finite" in event.reason


def test_nan_logits_without_fallback_raise_inference_error(write_config):
    ov_manager = manager(write_config({"openvino": {"enable_fallback": False}}), backend="openvino")
    handle = ov_manager.load_model("gpt2").handle
    handle.request = NaNLogitsFrom(handle.request)
    with pytest.raises(InferenceError, match="non-finite logits"):
        ov_manager.generate("gpt2", "Hello", max_new_tokens=2)


@pytest.mark.parametrize("attention", ["paged", "stateful"])
def test_unload_releases_the_weights_while_an_error_from_generation_is_kept(write_config, own_llama, attention):
    strict = write_config({"openvino": {"enable_fallback": False, "cache_dir": own_llama, "attention": attention}})
    ov_manager = manager(strict, backend="openvino")
    handle = ov_manager.load_model("tiny-llama").handle
    weights = handle.directory / "openvino_model.bin"

    handle.request = NaNLogitsFrom(handle.request, step=3)
    with pytest.raises(InferenceError) as kept:
        ov_manager.generate("tiny-llama", "Hello", max_new_tokens=6, ignore_eos=True)
    assert "step 2" in str(kept.value) and is_mapped(weights)
    ov_manager.unload_model("tiny-llama")
    del handle
    assert kept.value.__traceback__ is not None  # the frames of the failed generation are still alive
    assert not is_mapped(weights)


def test_openvino_that_does_not_import_falls_back_to_pytorch(write_config, muai_broken_import):
    muai_broken_import("openvino", ImportError("libopenvino.so.2540: cannot open shared object file"))
    loaded = manager(write_config(), backend="openvino").load_model("gpt2")
    assert loaded.backend_name == "pytorch"
    assert loaded.attempts[0].outcome == "unavailable"
    assert loaded.attempts[0].reason == (
        "backend 'openvino' is unavailable: openvino does not import "
        "(ImportError: libopenvino.so.2540: cannot open shared object file); pip install muai-openvino"
    )


def test_compile_failure_is_wrapped_with_context(write_config, monkeypatch):
    from muai_openvino import runtime

    class FailingCore:
        available_devices = ["CPU"]

        def read_model(self, path, config=None):
            import openvino as ov

            return ov.Core().read_model(path, config=config or {})

        def compile_model(self, *args):
            raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:\nout of memory")

    monkeypatch.setattr(runtime, "shared_core", lambda: FailingCore())
    strict = write_config({"openvino": {"enable_fallback": False}})
    with pytest.raises(ModelLoadError, match="could not compile") as info:
        manager(strict, backend="openvino").load_model("gpt2")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_unload_releases_the_compiled_model(write_config):
    import gc
    import weakref

    ov_manager = manager(write_config(), backend="openvino")
    handle = ov_manager.load_model("gpt2").handle
    ref = weakref.ref(handle.compiled)
    ov_manager.unload_model("gpt2")
    gc.collect()
    assert ref() is None and handle.request is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("num_streams", 9223372036854775808), ("inference_num_threads", 9223372036854775808), ("num_streams", 1025)],
)
def test_parallelism_openvino_cannot_take_is_a_configuration_error_not_a_fallback(write_config, key, value):
    ov_manager = manager(write_config({"openvino": {key: value}}), backend="openvino")
    with pytest.raises(ConfigurationError, match=f"backend.openvino.{key} must be .* to 1024"):
        ov_manager.load_model("gpt2")


def test_an_unwritable_compile_cache_dir_is_a_configuration_error_not_a_fallback(write_config, tmp_path):
    (tmp_path / "a-file").write_text("")
    ov_manager = manager(write_config({"openvino": {"compile_cache_dir": str(tmp_path / "a-file" / "blobs")}}))
    with pytest.raises(ConfigurationError, match="backend.openvino.compile_cache_dir .* is not a directory muai can"):
        ov_manager.load_model("gpt2", backend_override="openvino")


def test_one_shot_generate_exits_cleanly_every_time(write_config):
    # OpenVINO's objects dying during interpreter shutdown used to crash the process now and then
    command = [sys.executable, "-c", "from muai_core.cli import main; raise SystemExit(main())"]
    command += [
        "--config",
        write_config(),
        "generate",
        "tiny-llama",
        "Hello",
        "--backend",
        "openvino",
        "--max-new-tokens",
        "3",
    ]
    for attempt in range(EXIT_RUNS):
        run = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"run {attempt + 1} exited {run.returncode}: {run.stderr[-2000:]}"
