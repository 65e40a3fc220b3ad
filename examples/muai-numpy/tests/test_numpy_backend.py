"""The example backend end to end: installed, discovered, equal to PyTorch, in the fallback chain."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from muai_core import ModelManager
from muai_core.cli import main
from muai_core.errors import ModelLoadError

PROMPTS = ["The capital of France is", "Hello world!", "0 1 2 3"]


def manager(models_dir, tmp_path, **backend) -> ModelManager:
    config = tmp_path / "system.yaml"
    config.write_text(yaml.safe_dump({"models_dir": str(models_dir), "backend": backend}))
    return ModelManager(config_path=config)


def test_muai_plugins_lists_the_installed_backend(capsys):
    assert main(["plugins"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "numpy" in line)
    assert "muai-numpy" in line and line.split()[-1] == "available"


@pytest.mark.parametrize("model", ["gpt2", "llama", "llama-bf16"])
def test_greedy_tokens_and_logits_equal_pytorch(models_dir, tmp_path, model):
    ours, torch_ = manager(models_dir, tmp_path, default="numpy"), manager(models_dir, tmp_path, default="pytorch")
    for prompt in PROMPTS:
        mine = ours.generate_result(model, prompt, max_new_tokens=24, ignore_eos=True)
        reference = torch_.generate_result(model, prompt, max_new_tokens=24, ignore_eos=True)
        assert mine.token_ids == reference.token_ids and mine.text == reference.text
    assert ours.get_model(model).backend_name == "numpy"
    inputs = {"input_ids": [[5, 9, 2, 7, 100], [3, 3, 4, 1, 0]], "attention_mask": [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]}
    valid = np.asarray(inputs["attention_mask"], dtype=bool)  # a padding position's output means nothing
    mine, reference = (m.forward(model, inputs)["logits"][valid] for m in (ours, torch_))
    np.testing.assert_allclose(mine, reference, atol=1e-4)


def test_a_model_it_cannot_run_falls_back_to_pytorch(models_dir, tmp_path):
    scaled = tmp_path / "models" / "llama-scaled"
    shutil.copytree(models_dir / "llama", scaled)
    config = json.loads((scaled / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    (scaled / "config.json").write_text(json.dumps(config))
    chain = manager(scaled.parent, tmp_path, default="numpy", priority=["pytorch"])
    assert chain.generate("llama-scaled", "Hello", max_new_tokens=3)
    [attempt, served] = chain.explain("llama-scaled")
    assert (attempt.backend, served.backend) == ("numpy", "pytorch") and "RoPE type 'linear'" in attempt.reason


def test_without_fallback_the_reason_reaches_the_user(models_dir, tmp_path):
    (tmp_path / "models" / "broken").mkdir(parents=True)
    shutil.copy(models_dir / "llama" / "config.json", tmp_path / "models" / "broken")
    (tmp_path / "models" / "broken" / "model.safetensors").write_bytes(b"\xff" * 64)
    strict = manager(tmp_path / "models", tmp_path, default="numpy", numpy={"enable_fallback": False})
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        strict.load_model("broken")


def test_requests_run_in_parallel_with_the_sequential_answers(models_dir, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    ours = manager(models_dir, tmp_path, default="numpy")
    expected = {p: ours.generate("llama", p, max_new_tokens=8) for p in PROMPTS}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda p: (p, ours.generate("llama", p, max_new_tokens=8)), PROMPTS * 8))
    assert all(text == expected[prompt] for prompt, text in answers)
