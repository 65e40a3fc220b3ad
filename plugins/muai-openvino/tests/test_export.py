"""The exporter: stateful IR at each precision, manifest, validation, idempotence, atomic writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import openvino as ov
import pytest

from muai_core.config import parse_config
from muai_core.errors import ModelLoadError
from muai_openvino.export.pipeline import export_model, source_digest
from muai_openvino.files import BIN, MANIFEST, REQUIRED, XML

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["gpt2", "tiny-llama"])
@pytest.mark.parametrize(("precision", "folder"), [("FP32", ""), ("FP16", "-fp16"), ("INT8", "-int8")])
def test_export_writes_a_complete_stateful_ir(store, name, precision, folder):
    directory = store / "models" / "openvino" / f"{name}{folder}"
    assert all((directory / file).is_file() for file in REQUIRED)
    manifest = json.loads((directory / MANIFEST).read_text())
    assert (manifest["precision"], manifest["stateful"]) == (precision, True)
    assert manifest["source_sha256"] == source_digest(store / "models" / name)
    assert manifest["versions"]["openvino"] and manifest["versions"]["torch"].startswith("2.13.0")
    if precision == "FP32":
        assert manifest["validation"]["max_abs_diff"] <= 1e-3
        assert manifest["validation"]["token_agreement"] == 1.0
    model = ov.Core().read_model(directory / XML)
    ops = {op.get_type_name() for op in model.get_ops()}
    assert {"ReadValue", "Assign", "ScaledDotProductAttention"} <= ops
    assert sorted(p.get_any_name() for p in model.inputs) == ["attention_mask", "beam_idx", "input_ids", "position_ids"]
    assert [p.get_any_name() for p in model.outputs] == ["logits"]


def test_int8_weights_are_smaller(store):
    root = store / "models" / "openvino"
    fp32, int8 = ((root / d / BIN).stat().st_size for d in ("tiny-llama", "tiny-llama-int8"))
    assert int8 < fp32
    assert json.loads((root / "tiny-llama-int8" / MANIFEST).read_text())["int8_weights"] >= 2  # embeddings, lm_head


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


def test_unknown_model_and_precision_are_clear_errors(store, tmp_path):
    config = parse_config({"models_dir": str(store / "models")})
    with pytest.raises(ModelLoadError, match="muai pull nothing-here"):
        export_model("nothing-here", config, "FP32", str(tmp_path))
    with pytest.raises(ValueError, match="precision must be one of FP32, FP16, INT8"):
        export_model("gpt2", config, "INT4", str(tmp_path))


def test_seed_export_script_runs_as_written(store, tmp_path):
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
    from muai_core.cli import main

    config = tmp_path / "system.yaml"
    models = {name: {"pytorch_path": str(store / "models" / name)} for name in ("gpt2", "tiny-llama")}
    config.write_text(json.dumps({"models": models}))
    assert main(["--config", str(config), "export", "--all", "--cache-dir", str(tmp_path / "ov")]) == 0
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["gpt2", "tiny-llama"]


def test_no_staging_directory_is_left_after_exports(store):
    assert not list((store / "models" / "openvino").glob(".*partial"))


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
