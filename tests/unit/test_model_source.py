"""Model name resolution: config, models dir, local paths, hub ids, and no escape from models/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from muai_core.config import load_config, parse_config
from muai_core.errors import ModelLoadError
from muai_core.model_source import directory_eos_ids, eos_token_ids, home_models_dir, json_object, resolve_model


def make_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def test_config_entry_wins():
    config = parse_config({"models": {"gpt2": {"pytorch_path": "weights/gpt2", "openvino_path": "ir/gpt2"}}})
    source = resolve_model("gpt2", config)
    assert (source.source, source.is_local, source.paths["openvino_path"]) == ("weights/gpt2", True, "ir/gpt2")


def test_models_dir_then_local_path_then_hub():
    config = parse_config({})
    make_dir("models/gpt2")
    assert resolve_model("gpt2", config).source == os.path.join("models", "gpt2")
    make_dir("elsewhere/tiny")
    assert (resolve_model("elsewhere/tiny", config).source, resolve_model("elsewhere/tiny", config).is_local) == (
        "elsewhere/tiny",
        True,
    )
    hub = resolve_model("HuggingFaceTB/SmolLM2-135M", config)
    assert (hub.source, hub.is_local) == ("HuggingFaceTB/SmolLM2-135M", False)


def test_configured_models_dir_is_used():
    make_dir("store/m")
    assert resolve_model("m", parse_config({"models_dir": "store"})).source == os.path.join("store", "m")


@pytest.mark.parametrize("name", ["", "   ", None, 3, "a\x00b", "../../etc", "a b c", "org/name/extra"])
def test_invalid_names_are_refused(name):
    with pytest.raises(ModelLoadError):
        resolve_model(name, parse_config({}))


def test_symlink_out_of_models_dir_is_refused(tmp_path):
    make_dir("models")
    outside = make_dir(str(tmp_path / "outside"))
    os.symlink(outside, "models/escape")
    with pytest.raises(ModelLoadError, match="links outside the models directory"):
        resolve_model("escape", parse_config({}))


def test_a_file_linked_out_of_the_models_dir_is_refused(tmp_path):
    make_dir("models/tiny/sub")
    Path(tmp_path / "secret.safetensors").write_bytes(b"x")
    Path("models/tiny/config.json").write_text("{}")
    os.symlink(tmp_path / "secret.safetensors", "models/tiny/sub/model.safetensors")
    with pytest.raises(ModelLoadError, match=r"links outside the models directory \(its sub/model.safetensors\)"):
        resolve_model("tiny", parse_config({}))
    os.remove("models/tiny/sub/model.safetensors")
    os.symlink("../config.json", "models/tiny/sub/config.json")  # a link that stays inside is fine
    assert resolve_model("tiny", parse_config({})).source == os.path.join("models", "tiny")


@pytest.mark.parametrize(("value", "ids"), [(None, ()), (2, (2,)), ([2, 7], (2, 7)), ((0,), (0,))])
def test_eos_token_ids_accepts_an_id_or_a_list_of_them(value, ids):
    assert eos_token_ids(value, "m") == ids


@pytest.mark.parametrize("value", ["x", "2", 2.0, True, -1, [2, "x"], {"id": 2}])
def test_eos_token_ids_refuses_anything_else_at_load(value):
    with pytest.raises(ModelLoadError, match=r"eos_token_id of 'm' must be a token id or a list of them") as info:
        eos_token_ids(value, "m")
    assert "generation_config.json" in info.value.hint


@pytest.mark.parametrize(
    ("generation", "config", "ids"),
    [({"eos_token_id": [5, 6]}, {"eos_token_id": 2}, {5, 6}), (None, {"eos_token_id": 2}, {2}), ({}, {}, set())],
)
def test_eos_ids_come_from_generation_config_first_then_config(tmp_path, generation, config, ids):
    if generation is not None:
        (tmp_path / "generation_config.json").write_text(json.dumps(generation))
    assert directory_eos_ids(tmp_path, config, "m", hint="h") == ids


@pytest.mark.parametrize(
    ("text", "problem"), [("{oops", "cannot read"), ("[1, 2]", "holds a JSON list, not an object")]
)
def test_a_broken_json_file_is_a_load_error_naming_it(tmp_path, text, problem):
    (tmp_path / "generation_config.json").write_text(text)
    with pytest.raises(ModelLoadError, match=problem) as info:
        directory_eos_ids(tmp_path, {}, "m", hint="export the model again")
    assert "generation_config.json" in info.value.reason
    assert info.value.hint == "export the model again"


def test_a_missing_json_file_reads_as_empty(tmp_path):
    assert json_object(tmp_path / "absent.json", hint="h") == {}


def test_a_project_is_found_from_its_subfolders(monkeypatch):
    make_dir("models/gpt2")
    make_dir("src/deep")
    monkeypatch.chdir("src/deep")
    source = resolve_model("gpt2", parse_config({}))
    assert (Path(source.source).resolve(), source.is_local) == ((Path("../..") / "models/gpt2").resolve(), True)


def test_outside_a_project_models_live_in_the_user_home(monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("MUAI_HOME", str(home))
    config = parse_config({})
    assert home_models_dir(config) == home / "models"
    make_dir(str(home / "models" / "tiny"))
    source = resolve_model("tiny", config)
    assert (source.source, source.models_dir) == (str(home / "models" / "tiny"), str(home / "models"))


def test_the_project_models_dir_comes_before_the_user_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MUAI_HOME", str(tmp_path / "home"))
    make_dir(str(tmp_path / "home" / "models" / "tiny"))
    make_dir("models/tiny")
    assert resolve_model("tiny", parse_config({})).source == os.path.join("models", "tiny")
    assert home_models_dir(parse_config({})) == Path("models")


def test_the_project_config_is_found_from_a_subfolder(monkeypatch):
    make_dir("config")
    Path("config/system.yaml").write_text("models_dir: store\n")
    make_dir("store/tiny")
    make_dir("src")
    monkeypatch.chdir("src")
    config = load_config()
    assert config.models_dir == "store" and Path(config.source).resolve() == Path("../config/system.yaml").resolve()
    assert Path(resolve_model("tiny", config).source).resolve() == Path("../store/tiny").resolve()


def test_no_folder_above_the_home_folder_is_a_project(monkeypatch, tmp_path):
    from muai_core.locations import project_root

    make_dir(str(tmp_path / "models"))  # e.g. a models/ folder beside the home folders
    make_dir(str(tmp_path / "home" / "sub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "home" / "sub")
    assert project_root() is None
    make_dir(str(tmp_path / "home" / "models"))
    assert project_root() == tmp_path / "home"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_marker_owned_by_another_user_does_not_make_a_project(tmp_path):
    from muai_core.locations import project_root

    make_dir(str(tmp_path / "shared" / "models"))
    make_dir(str(tmp_path / "shared" / "job"))
    os.chown(tmp_path / "shared" / "models", os.getuid() + 4242, -1)  # as /tmp/models made by someone else
    assert project_root(tmp_path / "shared" / "job") is None
    os.chown(tmp_path / "shared" / "models", os.getuid(), -1)
    assert project_root(tmp_path / "shared" / "job") == tmp_path / "shared"
