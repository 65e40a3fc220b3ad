"""Security on every backend: safetensors only, no remote code, names stay inside models/, no leaked paths."""

from __future__ import annotations

import contextlib
import json
import os
import shutil

import pytest

from muai_core.errors import ModelLoadError

BACKENDS = ["pytorch", "openvino", "numpy"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["../outside", "../../etc", "linked", "/etc", "models/../../x"])
def test_names_cannot_reach_outside_the_models_directory(store, make_manager, muai_workdir, backend, name):
    models = muai_workdir / "models"
    models.mkdir(exist_ok=True)
    (muai_workdir / "outside").mkdir(exist_ok=True)
    if not (models / "linked").exists():
        os.symlink(store / "models" / "gpt2", models / "linked")  # a link out of models/
    manager = make_manager(models, store / "openvino", default=backend)
    with pytest.raises(ModelLoadError) as info:
        manager.load_model(name)
    assert str(store) not in str(info.value)


@pytest.mark.parametrize("backend", ["pytorch", "numpy"])
def test_pickle_weights_are_refused_unless_allowed(store, make_manager, muai_workdir, backend):
    model = muai_workdir / "models" / "pickled"
    shutil.copytree(store / "models" / "gpt2", model)
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="safetensors only, never pickle"):
        make_manager(model.parent, store / "openvino", default=backend).load_model("pickled")


def test_remote_code_never_runs(store, make_manager, muai_workdir):
    model = muai_workdir / "models" / "remote"
    shutil.copytree(store / "models" / "tiny-llama", model)
    marker = muai_workdir / "remote-code-ran"
    (model / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (model / "config.json").write_text(json.dumps(config))
    for backend in BACKENDS:
        manager = make_manager(model.parent, store / "openvino", default=backend)
        with contextlib.suppress(ModelLoadError):  # refusing is fine; running the code is not
            manager.generate("remote", "Hello", max_new_tokens=2)
    assert not marker.exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_do_not_show_absolute_paths_outside_the_project(store, make_manager, tmp_path_factory, backend):
    elsewhere = tmp_path_factory.mktemp("private-area") / "models"
    (elsewhere / "broken").mkdir(parents=True)
    (elsewhere / "broken" / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError) as info:
        make_manager(elsewhere, elsewhere / "openvino", default=backend).load_model("broken")
    assert str(elsewhere.parent) not in str(info.value) and "private-area" not in str(info.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_chat_template_that_would_hang_is_refused_quickly(store, make_manager, muai_workdir, backend):
    import time

    from muai_core.errors import InvalidInputError

    models, exports = muai_workdir / "models", muai_workdir / "openvino"
    shutil.copytree(store / "models" / "gpt2", models / "gpt2")
    shutil.copytree(store / "openvino" / "gpt2", exports / "gpt2", ignore=shutil.ignore_patterns("compiled-cache"))
    hostile = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    for directory in (models / "gpt2", exports / "gpt2"):
        (directory / "chat_template.jinja").write_text(hostile, encoding="utf-8")
    manifest = json.loads((exports / "gpt2" / "muai-export.json").read_text())  # as if exported with this template
    manifest["files"]["chat_template.jinja"]["size"] = len(hostile)
    (exports / "gpt2" / "muai-export.json").write_text(json.dumps(manifest))
    manager = make_manager(models, exports, default=backend)
    manager.load_model("gpt2")
    started = time.monotonic()
    with pytest.raises(InvalidInputError, match="chat template is too expensive to render"):
        manager.generate("gpt2", "Hello", max_new_tokens=2, chat=True)
    assert time.monotonic() - started < 10
