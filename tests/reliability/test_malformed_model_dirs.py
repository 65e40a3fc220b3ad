"""Fuzzed model directories: every damage ends in a working model or in the backend's own muai error.

Each example copies a good model directory (Hugging Face files, or an OpenVINO export), damages one to
three of its files, and loads it with fallback off on every backend. The backend itself must explain the
problem: a library exception that only the resolver wrapped counts as a failure.
"""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from muai_core.errors import BackendError

HF_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]
IR_FILES = ["openvino_model.xml", "openvino_model.bin", "muai-export.json", "tokenizer.json", "config.json"]
JSON_GARBAGE = st.sampled_from([[], 5, "text", None, {"model_type": 5}, {"vocab_size": -1}, {"eos_token_id": "x"}])


def damages(files: list[str]) -> st.SearchStrategy:
    kinds = st.one_of(
        st.tuples(st.just("delete"), st.sampled_from(files)),
        st.tuples(st.just("truncate"), st.sampled_from(files), st.floats(0.0, 0.99)),
        st.tuples(st.just("garbage"), st.sampled_from(files), st.binary(min_size=0, max_size=64)),
        st.tuples(st.just("json"), st.sampled_from([f for f in files if f.endswith(".json")]), JSON_GARBAGE),
        st.tuples(st.just("flip"), st.sampled_from(files), st.integers(0, 10**6)),
    )
    return st.lists(kinds, min_size=1, max_size=3)


def apply(directory, damage) -> None:
    kind, name, *args = damage
    file = directory / name
    if not file.exists():
        return
    if kind == "delete":
        file.unlink()
    elif kind == "truncate":
        data = file.read_bytes()
        file.write_bytes(data[: int(len(data) * args[0])])
    elif kind == "garbage":
        file.write_bytes(args[0])
    elif kind == "json":
        file.write_text(json.dumps(args[0]))
    else:  # flip one byte
        data = bytearray(file.read_bytes())
        if data:
            data[args[0] % len(data)] ^= 0xFF
            file.write_bytes(bytes(data))


def outcome(manager, model: str, backend: str) -> str:
    try:
        manager.generate(model, "Hello", max_new_tokens=2)
    except BackendError as exc:
        wrapped_by_resolver = exc.reason.startswith(f"backend '{backend}' ")
        assert not wrapped_by_resolver, f"{type(exc.__cause__).__name__} escaped {backend}: {exc}"
        event(f"{backend}: refused with {type(exc).__name__}")
        return "error"
    event(f"{backend}: still works")
    return "ok"


@pytest.mark.parametrize("backend", ["pytorch", "numpy"])
@settings(max_examples=100)
@given(model=st.sampled_from(["gpt2", "tiny-llama"]), damage=damages(HF_FILES))
def test_damaged_hugging_face_directories(store, make_manager, muai_workdir, backend, model, damage):
    models = muai_workdir / f"models-{backend}"
    shutil.rmtree(models, ignore_errors=True)
    shutil.copytree(store / "models" / model, models / model)
    for each in damage:
        apply(models / model, each)
    outcome(make_manager(models, store / "openvino", default=backend), model, backend)


@settings(max_examples=100)
@given(model=st.sampled_from(["gpt2", "tiny-llama"]), damage=damages(IR_FILES))
def test_damaged_openvino_exports(store, make_manager, muai_workdir, model, damage):
    exports = muai_workdir / "openvino"
    shutil.rmtree(exports, ignore_errors=True)
    shutil.copytree(store / "openvino" / model, exports / model, ignore=shutil.ignore_patterns("compiled-cache"))
    for each in damage:
        apply(exports / model, each)
    outcome(make_manager(store / "models", exports, default="openvino"), model, "openvino")


@pytest.mark.parametrize("backend", ["pytorch", "numpy"])
@pytest.mark.parametrize(("model", "field"), [("gpt2", "n_layer"), ("tiny-llama", "num_hidden_layers")])
def test_a_config_far_larger_than_its_weights_is_refused_before_building(
    store, make_manager, muai_workdir, backend, model, field
):
    from muai_core.errors import ModelLoadError

    models = muai_workdir / "models"
    shutil.copytree(store / "models" / model, models / model)
    config = json.loads((models / model / "config.json").read_text())
    config[field] = 1_000_000_000  # built before the weights are read: memory grows until the OOM killer
    (models / model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=f"config.json of '{model}' describes .*{field}=1000000000"):
        make_manager(models, store / "openvino", default=backend).generate(model, "Hello", max_new_tokens=2)


def rewrite_export_file(export, name: str, data: bytes) -> None:
    """Replace a file of an export and record its new size, so that only the backend can notice the damage."""
    (export / name).write_bytes(data)
    manifest = json.loads((export / "muai-export.json").read_text())
    manifest["files"][name]["size"] = len(data)
    (export / "muai-export.json").write_text(json.dumps(manifest))


def test_a_damaged_openvino_weights_file_is_refused_with_openvinos_reason(store, make_manager, muai_workdir):
    from muai_core.errors import ModelLoadError

    exports = muai_workdir / "openvino"
    shutil.copytree(store / "openvino" / "gpt2", exports / "gpt2", ignore=shutil.ignore_patterns("compiled-cache"))
    weights = (exports / "gpt2" / "openvino_model.bin").read_bytes()
    rewrite_export_file(exports / "gpt2", "openvino_model.bin", weights[: len(weights) // 2])
    with pytest.raises(ModelLoadError, match="Incorrect weights in bin file") as info:
        make_manager(store / "models", exports, default="openvino").load_model("gpt2")
    assert "Exception from src/" not in str(info.value)


def test_an_openvino_config_whose_vocab_size_disagrees_with_the_ir_is_refused(store, make_manager, muai_workdir):
    from muai_core.errors import ModelLoadError

    exports = muai_workdir / "openvino"
    shutil.copytree(store / "openvino" / "gpt2", exports / "gpt2", ignore=shutil.ignore_patterns("compiled-cache"))
    config = json.loads((exports / "gpt2" / "config.json").read_text())
    config["vocab_size"] = 1e12  # the IR's logits cover 384: ids up to 10^12 would pass and give zero logits
    rewrite_export_file(exports / "gpt2", "config.json", json.dumps(config).encode())
    with pytest.raises(ModelLoadError, match="says vocab_size is 1000000000000.0, but the IR's logits cover 384"):
        make_manager(store / "models", exports, default="openvino").forward("gpt2", {"input_ids": [[100000]]})
