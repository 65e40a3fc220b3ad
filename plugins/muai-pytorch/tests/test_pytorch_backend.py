"""The pytorch backend on real tiny models: generation, forward, sampling, errors, devices, unloading."""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from muai_core import ModelManager, PerformanceMonitor
from muai_core.errors import ConfigurationError, InvalidInputError, ModelLoadError
from muai_core.plugins import default_registry
from muai_core.testing.chat_templates import GEMMA_2_TEMPLATE
from muai_pytorch.settings import check_settings

ARCHS = ("gpt2", "llama")
#: One-shot CLI runs of the exit test: a crash at interpreter shutdown need not happen every time.
EXIT_RUNS = 5


def test_registered_through_its_entry_point():
    record = {r.name: r for r in default_registry().records()}["pytorch"]
    assert record.distribution == "muai-pytorch" and record.loaded
    assert default_registry().backend("pytorch").available().available


def test_a_runtime_that_does_not_import_makes_the_backend_unavailable(muai_broken_import):
    muai_broken_import("torch", OSError("libtorch_cpu.so: cannot open shared object file"))
    availability = default_registry().backend("pytorch").available()
    assert not availability.available
    assert availability.reason == (
        "torch does not import (OSError: libtorch_cpu.so: cannot open shared object file); pip install muai-pytorch"
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_matches_transformers_and_is_deterministic(tiny_models, arch):
    path = tiny_models[arch]
    manager = ModelManager()
    first = manager.generate_result(path, "Hello world", max_new_tokens=12)
    second = manager.generate_result(path, "Hello world", max_new_tokens=12)
    assert first.token_ids == second.token_ids and len(first.token_ids) == 12

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tokenizer("Hello world", return_tensors="pt").input_ids
    expected = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert list(first.token_ids) == expected[0, ids.shape[1] :].tolist()
    assert first.text == tokenizer.decode(expected[0], skip_special_tokens=True)


def test_max_length_counts_the_prompt(tiny_models):
    result = ModelManager().generate_result(tiny_models["gpt2"], "Hello world", max_length=20)
    assert result.prompt_tokens + result.new_tokens == 20 and result.finish_reason == "length"


def test_stops_at_eos(eos_model):
    result = ModelManager().generate_result(eos_model, "Hello", max_new_tokens=10)
    assert (result.finish_reason, result.new_tokens, result.completion) == ("eos", 1, "")


def test_sampling_is_reproducible_with_a_seed(tiny_models):
    manager = ModelManager()
    runs = [
        manager.generate_result(tiny_models["llama"], "The", max_new_tokens=16, temperature=1.5, top_k=50, seed=s)
        for s in (7, 7, 8)
    ]
    assert runs[0].token_ids == runs[1].token_ids
    assert runs[0].token_ids != runs[2].token_ids


def test_whole_number_sampling_arguments_are_accepted(tiny_models):
    """An int temperature or top_p is a valid request; transformers itself refuses an int temperature."""
    manager = ModelManager()
    as_int = manager.generate_result(tiny_models["llama"], "The", max_new_tokens=8, temperature=2, top_p=1, seed=3)
    as_float = manager.generate_result(
        tiny_models["llama"], "The", max_new_tokens=8, temperature=2.0, top_p=1.0, seed=3
    )
    assert as_int.token_ids == as_float.token_ids and as_int.new_tokens == 8


def test_streaming_pieces_make_up_the_completion_and_stop_early(tiny_models):
    pieces: list[str] = []
    manager = ModelManager()
    result = manager.generate_result(tiny_models["gpt2"], "Hello", max_new_tokens=10, streamer=pieces.append)
    assert "".join(pieces) == result.completion
    assert len(result.token_latencies_s) == result.new_tokens - 1 and result.ttft_s > 0
    stopped = manager.generate_result(tiny_models["gpt2"], "Hello", max_new_tokens=10, streamer=lambda p: False)
    assert stopped.finish_reason == "stopped" and stopped.new_tokens < 10


def test_chat_applies_the_template_and_returns_the_answer_alone(tiny_models):
    manager = ModelManager()
    chat = manager.generate_result(tiny_models["gpt2"], "Hi", max_new_tokens=3, chat=True)
    rendered = manager.generate_result(tiny_models["gpt2"], "<|user|>Hi\n<|assistant|>", max_new_tokens=3)
    assert chat.token_ids == rendered.token_ids
    assert chat.text == chat.completion == rendered.completion


@pytest.mark.parametrize("where", ["chat_template.jinja", "tokenizer_config.json"])
def test_messages_go_through_the_models_template_as_transformers_renders_it(tiny_models, tmp_path, where):
    model = shutil.copytree(tiny_models["gpt2"], tmp_path / "gemma-templated")
    (model / "chat_template.jinja").unlink()
    if where == "chat_template.jinja":
        (model / where).write_text(GEMMA_2_TEMPLATE, encoding="utf-8")
    else:
        config = json.loads((model / where).read_text(encoding="utf-8"))
        (model / where).write_text(json.dumps({**config, "chat_template": GEMMA_2_TEMPLATE}), encoding="utf-8")
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Capital of France?"}]  # fmt: skip
    rendered = AutoTokenizer.from_pretrained(model).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    assert rendered.endswith("<start_of_turn>model\n")
    manager = ModelManager(monitor=PerformanceMonitor())
    answer = manager.generate_result(str(model), messages=messages, max_new_tokens=3)
    assert answer.token_ids == manager.generate_result(str(model), rendered, max_new_tokens=3).token_ids
    assert answer.text == answer.completion and answer.backend == "pytorch"
    with pytest.raises(InvalidInputError, match="chat template failed: System role not supported"):
        manager.generate(str(model), messages=[{"role": "system", "content": "Be brief."}, *messages])
    assert manager.performance_monitor.fallback_events() == []


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_matches_transformers_logits(tiny_models, arch):
    ids = np.array([[5, 17, 42, 99], [1, 2, 3, 4]])
    logits = ModelManager().forward(tiny_models[arch], {"input_ids": ids})["logits"]
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(tiny_models[arch])(torch.from_numpy(ids)).logits.numpy()
    assert logits.dtype == np.float32 and logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_prompt_longer_than_the_context_is_refused(tiny_models):
    with pytest.raises(InvalidInputError, match="context"):
        ModelManager().generate(tiny_models["gpt2"], "word " * 400, max_new_tokens=1)


def test_forward_beyond_the_context_is_refused(tiny_models):
    with pytest.raises(InvalidInputError, match="input_ids has 1000 positions but the model's context holds 128"):
        ModelManager().forward(tiny_models["gpt2"], {"input_ids": [[1] * 1000]})


def test_a_temperature_too_small_to_divide_by_is_refused(tiny_models):
    with pytest.raises(InvalidInputError, match="temperature must be a finite number >= 0.001, got 1e-300"):
        ModelManager().generate(tiny_models["llama"], "Hello", max_new_tokens=4, temperature=1e-300)


def test_a_nonsensical_context_length_is_a_load_error_naming_the_field(tiny_models, tmp_path):
    path = tmp_path / "negative-context"
    shutil.copytree(tiny_models["llama"], path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": -5}))
    with pytest.raises(ModelLoadError, match="max_position_embeddings in the config.json of .* must be a positive int"):
        ModelManager().load_model(str(path))


def test_missing_model_says_where_it_looked_and_what_there_is(tiny_models):
    os.makedirs("models", exist_ok=True)
    shutil.copytree(tiny_models["gpt2"], "models/tiny")
    with pytest.raises(ModelLoadError) as info:
        ModelManager().load_model("gpt2")
    message = str(info.value)
    assert message.startswith("model 'gpt2' not found locally (no directory of that name here or in models, ")
    assert "Hugging Face hub" in message, "the hub attempt's reason is kept"
    assert "installed: tiny; fetch by name: smollm2-135m (muai pull smollm2-135m)" in message
    with pytest.raises(ModelLoadError, match="model 'smollm2-135m' is not installed") as info:
        ModelManager().load_model("smollm2-135m")
    assert info.value.hint == "get it with: muai pull smollm2-135m"


def test_pickle_checkpoint_is_refused(tiny_models, tmp_path):
    path = tmp_path / "pickled"
    shutil.copytree(tiny_models["gpt2"], path)
    (path / "model.safetensors").rename(path / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pytorch_model.bin.*safetensors only") as info:
        ModelManager().load_model(str(path))
    assert "allow_pickle: true" in info.value.hint


def test_pickle_checkpoint_loads_only_when_the_user_opts_in(tiny_models, tmp_path, caplog):
    path = tmp_path / "pickled"
    shutil.copytree(tiny_models["gpt2"], path)
    (path / "model.safetensors").unlink()
    torch.save(AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]).state_dict(), path / "pytorch_model.bin")
    opted_in = ModelManager(backend="pytorch", backend_config={"allow_pickle": True})
    answer = opted_in.generate_result(str(path), "Hello", max_new_tokens=5, ignore_eos=True)
    reference = ModelManager().generate_result(tiny_models["gpt2"], "Hello", max_new_tokens=5, ignore_eos=True)
    assert answer.token_ids == reference.token_ids and "allow_pickle is on" in caplog.text
    with pytest.raises(ModelLoadError, match="safetensors only"):
        ModelManager().load_model(str(path))
    with pytest.raises(ConfigurationError, match="allow_pickle must be true or false"):
        ModelManager(backend="pytorch", backend_config={"allow_pickle": "yes"}).load_model(str(path))


def test_memory_bound_evicts_and_frees_real_models(tiny_models):
    small = ModelManager()
    size = small.load_model(tiny_models["gpt2"]).memory_bytes()
    assert size == sum(p.numel() * 4 for p in small.get_model(tiny_models["gpt2"]).handle.model.parameters())
    bounded = ModelManager(max_cache_bytes=int(size * 1.5), max_cached_models=5)
    module = weakref.ref(bounded.load_model(tiny_models["gpt2"]).handle.model)
    bounded.load_model(tiny_models["llama"])
    gc.collect()
    assert bounded.loaded_models() == [tiny_models["llama"]] and module() is None
    with pytest.raises(ModelLoadError, match="more than max_cache_bytes"):
        ModelManager(max_cache_bytes=size // 2).load_model(tiny_models["gpt2"])


@pytest.mark.parametrize("garbage", ["{not json", json.dumps({"model_type": "no-such-architecture"})])
def test_garbage_config_is_a_model_load_error(tiny_models, tmp_path, garbage):
    path = tmp_path / "broken"
    shutil.copytree(tiny_models["gpt2"], path)
    (path / "config.json").write_text(garbage)
    with pytest.raises(ModelLoadError):
        ModelManager().load_model(str(path))


def test_cuda_without_a_gpu_runs_on_the_cpu_with_a_warning(tiny_models, caplog):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the fallback to CPU cannot happen")
    with caplog.at_level(logging.WARNING):
        manager = ModelManager(device="cuda")
        manager.load_model(tiny_models["gpt2"])
    assert manager.get_model_info(tiny_models["gpt2"])["device"] == "cpu"
    assert "CUDA is not available" in caplog.text


@pytest.mark.parametrize(("settings", "message"), [({"device": "banana"}, "device"), ({"dtype": "int3"}, "dtype")])
def test_bad_settings_are_configuration_errors(tiny_models, settings, message):
    with pytest.raises(ConfigurationError, match=message):
        ModelManager(backend="pytorch", backend_config=settings).load_model(tiny_models["gpt2"])


@pytest.mark.parametrize(
    ("section", "hint"),
    [
        ({"devcie": "cpu"}, "allowed keys are: allow_pickle, device, dtype, enable_fallback"),
        ({"dtype": "float64"}, "dtype: float16"),
        ({"allow_pickle": "yes"}, "allow_pickle: true"),
        ({"device": "banana"}, "backend.pytorch.device"),
    ],
)
def test_every_bad_setting_has_a_hint(section, hint):
    with pytest.raises(ConfigurationError) as info:
        check_settings(section)
    assert hint in info.value.hint


@pytest.mark.parametrize(
    ("section", "problem"),
    [("devcie: cpu", "unknown key(s) devcie at backend.pytorch"), ("dtype: float64", "backend.pytorch.dtype must be")],
)
def test_doctor_reports_a_bad_section_without_loading_a_model(tmp_path, capsys, section, problem):
    from muai_core.cli import main

    config = tmp_path / "system.yaml"
    config.write_text(f"backend:\n  pytorch:\n    {section}\n")
    assert main(["--config", str(config), "doctor"]) == 2
    assert f"problem: config: {problem}" in capsys.readouterr().out


def test_dtype_setting_is_applied(tiny_models):
    manager = ModelManager(backend_config={"dtype": "bfloat16"})
    manager.load_model(tiny_models["llama"])
    info = manager.get_model_info(tiny_models["llama"])["model_info"]
    assert info["dtype"] == "bfloat16" and info["parameters"] > 0


def test_unload_frees_the_model(tiny_models):
    manager = ModelManager()
    handle = manager.load_model(tiny_models["gpt2"]).handle
    model_ref = weakref.ref(handle.model)
    manager.unload_model(tiny_models["gpt2"])
    gc.collect()
    assert model_ref() is None


def test_doctor_shows_torch_and_its_devices(capsys):
    from muai_core.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch devices cpu" in out and "transformers" in out


def test_generate_prints_no_loading_progress_bar(tiny_models, capfd):
    from transformers.utils import logging as hf_logging

    from muai_core.cli import main

    assert hf_logging.is_progress_bar_enabled()
    assert main(["generate", tiny_models["llama"], "Hello", "--backend", "pytorch", "--max-new-tokens", "2"]) == 0
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err, err
    assert hf_logging.is_progress_bar_enabled(), "the caller's progress-bar setting must be restored"


def test_the_builtin_model_is_known_with_its_pull_command():
    assert default_registry().known_models()["smollm2-135m"] == "muai pull smollm2-135m"


def test_one_shot_generate_exits_cleanly_every_time(tiny_models):
    # the models are unloaded before interpreter shutdown, while torch can still free them
    command = [sys.executable, "-c", "from muai_core.cli import main; raise SystemExit(main())"]
    command += ["generate", tiny_models["llama"], "Hello", "--backend", "pytorch", "--max-new-tokens", "3"]
    for attempt in range(EXIT_RUNS):
        run = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"run {attempt + 1} exited {run.returncode}: {run.stderr[-2000:]}"
