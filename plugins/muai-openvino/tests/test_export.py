"""The exporter: stateful IR at each precision, manifest, validation, idempotence, atomic writes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import openvino as ov
import pytest

from muai_core.cli import main
from muai_core.config import parse_config
from muai_core.contracts import LoadRequest
from muai_core.errors import ModelLoadError
from muai_core.staging import staged_directory, target_lock
from muai_openvino.export import pipeline
from muai_openvino.export.pipeline import export_model, source_digest
from muai_openvino.export_layout import BIN, MANIFEST, REQUIRED, XML, check_ir_dir, ir_dir

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["gpt2", "tiny-llama"])
@pytest.mark.parametrize(
    ("precision", "folder"), [("FP32", ""), ("FP16", "-fp16"), ("INT8", "-int8"), ("INT4", "-int4")]
)
def test_export_writes_a_complete_stateful_ir(store, name, precision, folder):
    directory = store / "models" / "openvino" / f"{name}{folder}"
    assert all((directory / file).is_file() for file in REQUIRED)
    manifest = json.loads((directory / MANIFEST).read_text())
    assert (manifest["precision"], manifest["stateful"]) == (precision, True)
    assert manifest["source_sha256"] == source_digest(store / "models" / name)
    assert manifest["versions"]["openvino"] and manifest["versions"]["torch"].startswith("2.13.0")
    quality = manifest["validation"]["quality"]
    assert (quality["prompts"], quality["tokens"], len(quality["per_prompt"])) == (18, 64, 18)
    if precision == "FP32":
        assert manifest["validation"]["max_abs_diff"] <= 1e-3
        assert (quality["agreement"], quality["first_divergence"]) == (1.0, 64)
        assert quality["kl"] < 1e-4 and quality["inference_precision"] == "f32"
    model = ov.Core().read_model(directory / XML)
    ops = {op.get_type_name() for op in model.get_ops()}
    assert {"ReadValue", "Assign", "ScaledDotProductAttention"} <= ops
    assert sorted(p.get_any_name() for p in model.inputs) == ["attention_mask", "beam_idx", "input_ids", "position_ids"]
    assert [p.get_any_name() for p in model.outputs] == ["logits"]


def test_int8_and_int4_weights_are_smaller(store):
    root = store / "models" / "openvino"
    fp32, int8, int4 = ((root / d / BIN).stat().st_size for d in ("tiny-llama", "tiny-llama-int8", "tiny-llama-int4"))
    assert int4 < int8 < fp32
    model = ov.Core().read_model(root / "tiny-llama-int4" / XML)
    types = {op.get_element_type().get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}
    assert {"u4", "u8"} <= types  # INT4 layers, and the embeddings and last layer in INT8
    manifest = json.loads((root / "tiny-llama-int4" / MANIFEST).read_text())
    assert manifest["compression"] == {"precision": "INT4", "group_size": 64, "symmetric": False, "ratio": 1.0,
                                       "awq": False, "scale_estimation": False}  # fmt: skip


def test_second_export_is_skipped_and_force_redoes_it(store, tmp_path):
    config = parse_config({"models_dir": str(store / "models")})
    first = export_model("gpt2", config, "FP32", str(tmp_path / "ov"))
    again = export_model("gpt2", config, "FP32", str(tmp_path / "ov"))
    forced = export_model("gpt2", config, "FP32", str(tmp_path / "ov"), force=True)
    assert (first.skipped, again.skipped, forced.skipped) == (False, True, False)
    assert forced.manifest["exported_at"] >= first.manifest["exported_at"]


def test_failed_validation_leaves_no_directory(store, tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise ModelLoadError("injected: disagrees with PyTorch")

    monkeypatch.setattr("muai_openvino.export.validate.validate", failing)
    config = parse_config({"models_dir": str(store / "models")})
    with pytest.raises(ModelLoadError, match="injected"):
        export_model("gpt2", config, "FP32", str(tmp_path / "ov"))
    assert list((tmp_path / "ov").iterdir()) == []


def test_a_model_the_tracer_cannot_convert_is_our_error_naming_it(store, tmp_path, monkeypatch, capsys):
    def failing(*args, **kwargs):
        raise RuntimeError("Couldn't get TorchScript module by tracing.\nThe size of tensor a (16) must match (15)")

    monkeypatch.setattr("openvino.convert_model", failing)  # injected: a tracing failure inside OpenVINO
    config = tmp_path / "system.yaml"
    config.write_text(json.dumps({"models_dir": str(store / "models")}))
    assert main(["--config", str(config), "export", "gpt2", "--cache-dir", str(tmp_path / "ov")]) == 2
    err = capsys.readouterr().err
    assert "OpenVINO could not trace and convert" in err and "tensor a (16) must match (15)" in err
    assert "Traceback" not in err and "muai generate NAME --backend pytorch" in err
    assert list((tmp_path / "ov").iterdir()) == []


def test_unknown_model_and_precision_are_clear_errors(store, tmp_path):
    config = parse_config({"models_dir": str(store / "models")})
    with pytest.raises(
        ModelLoadError, match=r"no local model 'nothing-here' to export \(installed: gpt2, tiny-llama\)"
    ):
        export_model("nothing-here", config, "FP32", str(tmp_path))
    with pytest.raises(ModelLoadError) as info:
        export_model("gtp2", config, "FP32", str(tmp_path))
    assert info.value.hint.startswith("did you mean gpt2? get it first: muai pull gtp2")
    with pytest.raises(ValueError, match="precision must be one of FP32, FP16, INT8, INT4"):
        export_model("gpt2", config, "INT2", str(tmp_path))


def test_the_design_export_script_runs_as_written(store, tmp_path):
    shutil.copytree(store / "models" / "gpt2", tmp_path / "models" / "gpt2")
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "export_to_openvino.py"), "gpt2", "--precision", "FP16"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "[5/5] FP16" in run.stderr
    assert (tmp_path / "models" / "openvino" / "gpt2-fp16" / XML).is_file()


def test_export_all_exports_each_configured_model(store, tmp_path, capsys):
    config = tmp_path / "system.yaml"
    models = {name: {"pytorch_path": str(store / "models" / name)} for name in ("gpt2", "tiny-llama")}
    config.write_text(json.dumps({"models": models}))
    assert main(["--config", str(config), "export", "--all", "--cache-dir", str(tmp_path / "ov")]) == 0
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["gpt2", "tiny-llama"]


def test_no_staging_directory_is_left_after_exports(store):
    assert not list((store / "models" / "openvino").glob(".*"))


def test_tracing_does_not_pass_on_transformers_loss_type_warning(store):
    import logging

    import torch
    from transformers import AutoModelForCausalLM

    from muai_openvino.export.convert import convert

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    logger, records = logging.getLogger("transformers.modeling_utils"), Records()
    logger.addHandler(records)
    try:
        logging.Logger.warning_once.cache_clear()  # transformers warns once per process: this test must see the first
        model = AutoModelForCausalLM.from_pretrained(
            store / "models" / "tiny-llama", dtype=torch.float32, attn_implementation="sdpa", use_safetensors=True
        )
        convert(model)
        assert not [m for m in records.messages if "loss_type" in m]
        logging.Logger.warning_once.cache_clear()
        model.model.loss_function  # the base model's, which tracing reads: outside the export it warns  # noqa: B018
        assert [m for m in records.messages if "loss_type" in m]
    finally:
        logger.removeHandler(records)


@pytest.fixture
def models(store, muai_workdir) -> Path:
    """``models/tgpt2`` (a copy of the tiny gpt2, with an empty ``sub`` folder) and two other exports beside."""
    shutil.copytree(store / "models" / "gpt2", muai_workdir / "models" / "tgpt2")
    (muai_workdir / "models" / "tgpt2" / "sub").mkdir()
    for other in ("tiny-llama", "tiny-llama-int8"):
        shutil.copytree(store / "models" / "openvino" / other, muai_workdir / "models" / "openvino" / other)
    return muai_workdir / "models"


def test_a_model_given_as_a_path_is_filed_under_its_folder_and_nothing_else_is_removed(models, monkeypatch, capsys):
    monkeypatch.chdir(models / "tgpt2")
    assert main(["export", ".", "--cache-dir", "../openvino"]) == 0  # '.' has no name: it used to be the cache dir
    monkeypatch.chdir(models.parent)
    assert main(["export", "models/tgpt2/sub/.."]) == 0  # '..' named the folder above the cache dir
    assert capsys.readouterr().out.split() == ["../openvino/tgpt2", "models/openvino/tgpt2"]
    assert sorted(p.name for p in (models / "openvino").iterdir()) == ["tgpt2", "tiny-llama", "tiny-llama-int8"]
    assert all((models / "openvino" / "tgpt2" / file).is_file() for file in REQUIRED)
    assert all((models / "openvino" / "tiny-llama-int8" / file).is_file() for file in REQUIRED)
    assert (models / "tgpt2" / "sub").is_dir()


@pytest.mark.parametrize("key", ["..", "ABSOLUTE", "a/../.."])
def test_a_configured_name_that_is_not_a_name_is_refused(models, key, capsys):
    victim = models.parent / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    key = str(victim) if key == "ABSOLUTE" else key
    config = models.parent / "system.yaml"
    config.write_text(json.dumps({"models": {key: {"pytorch_path": str(models / "tgpt2")}}}))
    assert main(["--config", str(config), "export", "--all"]) == 2
    assert "not a usable model name" in capsys.readouterr().err
    assert sorted(p.name for p in (models / "openvino").iterdir()) == ["tiny-llama", "tiny-llama-int8"]
    assert (models / "tgpt2" / "config.json").is_file()
    assert (victim / "precious.txt").read_text() == "keep"


def test_an_export_folder_that_is_not_a_folder_is_our_error(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MUAI_FULL_PATHS", "1")
    config = tmp_path / "system.yaml"
    config.write_text(json.dumps({"models_dir": str(store / "models")}))
    with pytest.raises(ValueError, match="export folder /dev/null is not a directory") as info:
        export_model("gpt2", parse_config({"models_dir": str(store / "models")}), "FP32", "/dev/null")
    assert "--cache-dir" in info.value.hint
    assert main(["--config", str(config), "export", "gpt2", "--cache-dir", "/dev/null/ov"]) == 2  # parent: a file
    assert "cannot write in /dev/null/ov: not a folder" in capsys.readouterr().err


def test_a_read_only_destination_is_our_error(store, tmp_path, monkeypatch, capsys):
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(real):  # root ignores the mode: refuse writes inside the folder as the kernel would for a user
        def call(path, *args, **kwargs):
            if Path(path).parent == read_only:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "open", refuse(real_open))
    monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    config = tmp_path / "system.yaml"
    config.write_text(json.dumps({"models_dir": str(store / "models")}))
    assert main(["--config", str(config), "export", "gpt2", "--cache-dir", str(read_only)]) == 2
    err = capsys.readouterr().err
    assert "cannot write in read-only: Permission denied" in err
    assert "hint: pass a folder you can write to with --cache-dir" in err


def test_a_damaged_or_missing_file_makes_the_export_out_of_date(store, tmp_path, monkeypatch):
    config = parse_config({"models_dir": str(store / "models")})
    cache = tmp_path / "ov"
    shutil.copytree(store / "models" / "openvino" / "gpt2", cache / "gpt2")
    assert export_model("gpt2", config, "FP32", str(cache)).skipped

    def exporting(*args, **kwargs):
        raise ModelLoadError("injected: exporting again")

    monkeypatch.setattr(pipeline, "load_source", exporting)
    bin_file = cache / "gpt2" / BIN
    data = bytearray(bin_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_file.write_bytes(data)
    with pytest.raises(ModelLoadError, match="exporting again"):
        export_model("gpt2", config, "FP32", str(cache))
    bin_file.write_bytes(data[:-4])
    with pytest.raises(ModelLoadError, match=f"{BIN} has {len(data) - 4} bytes, the export wrote {len(data)}"):
        check_ir_dir(cache / "gpt2", "gpt2")
    shutil.copy2(store / "models" / "openvino" / "gpt2" / BIN, bin_file)
    (cache / "gpt2" / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="exporting again"):
        export_model("gpt2", config, "FP32", str(cache))
    assert (cache / "gpt2" / BIN).read_bytes() == (store / "models" / "openvino" / "gpt2" / BIN).read_bytes()


def test_cli_export_shows_its_steps_on_stderr_and_the_path_once_on_stdout(store, tmp_path, capsys):
    config = tmp_path / "system.yaml"
    config.write_text(json.dumps({"models_dir": str(store / "models")}))
    argv = ["--config", str(config), "export", "gpt2", "--cache-dir", str(tmp_path / "ov")]
    assert main(argv) == 0 and main(argv) == 0  # the second finds the export up to date
    out, err = capsys.readouterr()
    target = str(tmp_path / "ov" / "gpt2")
    assert out == f"{target}\n{target}\n"
    assert "muai export: [1/5] loading" in err and "muai export: [5/5] FP32:" in err
    assert "muai export: gpt2 FP32 is up to date" in err
    assert target not in err
    assert "%|" not in err  # not a terminal: no transformers bars either


def test_a_second_export_waits_for_the_first_and_uses_its_result(store, tmp_path, capsys):
    config = parse_config({"models_dir": str(store / "models")})
    target = tmp_path / "ov" / "gpt2"
    holding, released = threading.Event(), threading.Event()

    def other_export() -> None:  # another process's export of the same target, finishing while this one waits
        with target_lock(target), staged_directory(target, MANIFEST) as staging:
            holding.set()
            released.wait(60)
            shutil.copytree(store / "models" / "openvino" / "gpt2", staging, dirs_exist_ok=True)

    other = threading.Thread(target=other_export)
    other.start()
    assert holding.wait(60)
    waits = threading.Timer(1.0, released.set)
    waits.start()
    result = export_model("gpt2", config, "FP32", str(tmp_path / "ov"))
    other.join(60)
    assert result.skipped
    assert "another export to" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["gpt2"]


def test_files_of_an_export_that_link_outside_it_are_refused(store, tmp_path):
    cache, elsewhere = tmp_path / "ov", tmp_path / "elsewhere"
    shutil.copytree(store / "models" / "openvino" / "gpt2", elsewhere / "gpt2")
    cache.mkdir()
    (cache / "gpt2").symlink_to(elsewhere / "gpt2")
    request = LoadRequest("gpt2", "transformers", "models/gpt2", True, "CPU")
    with pytest.raises(ModelLoadError, match="links outside") as info:
        ir_dir(request, str(cache), "FP32")
    assert "openvino_path" in info.value.hint
    configured = LoadRequest(
        "gpt2", "transformers", "models/gpt2", True, "CPU", {}, {"openvino_path": str(cache / "gpt2")}
    )
    assert check_ir_dir(ir_dir(configured, str(cache), "FP32"), "gpt2")["stateful"]  # named in the config: allowed
    (cache / "gpt2").unlink()
    shutil.copytree(elsewhere / "gpt2", cache / "gpt2")
    (cache / "gpt2" / BIN).unlink()
    (cache / "gpt2" / BIN).symlink_to(elsewhere / "gpt2" / BIN)
    with pytest.raises(ModelLoadError, match=f"{BIN} links outside the export"):
        check_ir_dir(ir_dir(request, str(cache), "FP32"), "gpt2")


def test_outside_a_project_pull_export_and_generate_use_the_user_home(store, tmp_path, monkeypatch, capsys):
    home = Path(os.environ["MUAI_HOME"])
    assert main(["pull", str(store / "models" / "tiny-llama"), "--name", "tiny"]) == 0
    assert main(["export", "tiny"]) == 0
    assert (home / "models" / "tiny" / "config.json").is_file()
    assert (home / "models" / "openvino" / "tiny" / MANIFEST).is_file()
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["generate", "tiny", "Hello", "--backend", "openvino", "--max-new-tokens", "3"]) == 0
    assert "[openvino]" in capsys.readouterr().err
    assert not list(tmp_path.glob("**/openvino_model.xml")), "nothing may be written under the working directory"
