"""``muai export`` of encoder-decoder models (T5, BART): an encoder IR and a stateful decoder IR, validated."""

from __future__ import annotations

import json
import shutil

import numpy as np
import openvino as ov
import pytest

from muai_core import ModelManager
from muai_core.cli import main
from muai_core.config import parse_config
from muai_core.errors import ModelLoadError
from muai_core.quality import Bar
from muai_openvino.export.pipeline import export_model
from muai_openvino.export_layout import (
    DECODER_BIN,
    DECODER_XML,
    ENCODER_BIN,
    ENCODER_XML,
    MANIFEST,
    SEQ2SEQ_REQUIRED,
    XML,
    check_ir_dir,
)


@pytest.mark.parametrize(("name", "precision", "folder"), [("t5", "FP32", "t5"), ("bart", "FP32", "bart"),
                         ("t5", "FP16", "t5-fp16"), ("t5", "INT8", "t5-int8")])  # fmt: skip
def test_export_writes_an_encoder_and_a_stateful_decoder(seq2seq_store, name, precision, folder):
    directory = seq2seq_store / "models" / "openvino" / folder
    assert all((directory / file).is_file() for file in SEQ2SEQ_REQUIRED) and not (directory / XML).exists()
    manifest = json.loads((directory / MANIFEST).read_text())
    assert (manifest["precision"], manifest["stateful"], manifest["encoder_decoder"]) == (precision, True, True)
    assert set(SEQ2SEQ_REQUIRED) - {MANIFEST} <= set(manifest["files"])
    if precision == "FP32":
        assert manifest["validation"]["max_abs_diff"] <= 1e-3 and manifest["validation"]["quality"]["agreement"] == 1.0
    core = ov.Core()
    encoder, decoder = core.read_model(directory / ENCODER_XML), core.read_model(directory / DECODER_XML)
    layers = 2
    cross = [f"cross.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    assert [p.get_any_name() for p in encoder.inputs] == ["input_ids", "attention_mask"]
    assert [p.get_any_name() for p in encoder.outputs] == cross
    # the decoder reads the cross keys/values; it never sees (or re-projects) the encoder's hidden states
    inputs = sorted(p.get_any_name() for p in decoder.inputs)
    assert inputs == sorted(["input_ids", "encoder_attention_mask", "beam_idx", *cross])
    assert [p.get_any_name() for p in decoder.outputs] == ["logits"]
    states = [op for op in decoder.get_ops() if op.get_type_name() == "ReadValue"]
    assert len(states) == 2 * layers, "the self-attention keys and values of each layer live in state"


def test_int8_and_fp16_weights_are_smaller(seq2seq_store):
    root = seq2seq_store / "models" / "openvino"
    for file in (ENCODER_BIN, DECODER_BIN):
        fp32, fp16, int8 = ((root / d / file).stat().st_size for d in ("t5", "t5-fp16", "t5-int8"))
        assert int8 < fp32 and fp16 < fp32, file


def test_a_decoder_step_feeds_one_token_and_keeps_the_past_in_state(seq2seq_store):
    # decoding token by token must give the logits of the whole output at once (the cache, not a re-run)
    manager = ModelManager(
        backend="openvino",
        backend_config={"cache_dir": str(seq2seq_store / "models" / "openvino")},
        config_path=_config(seq2seq_store),
    )
    handle = manager.load_model("t5").handle
    result = manager.generate_result("t5", "The capital of France", max_new_tokens=8, ignore_eos=True)
    decoder = [[handle.decoder_start_id, *result.token_ids[:-1]]]
    ids = [handle.codec.encode("The capital of France")]
    logits = manager.forward("t5", {"input_ids": ids, "decoder_input_ids": decoder})["logits"]
    assert list(logits[0].argmax(-1)) == list(result.token_ids)
    assert np.isfinite(logits).all()
    weights = sum((handle.directory / file).stat().st_size for file in (ENCODER_BIN, DECODER_BIN))
    assert manager.get_model_info("t5")["model_info"]["memory_bytes"] == weights


def test_a_failing_validation_fails_the_seq2seq_export(seq2seq_store, tmp_path, monkeypatch):
    from muai_openvino.export import seq2seq

    real = seq2seq._Decoder.forward

    def shifted(self, *args):  # noqa: ANN001, ANN002
        logits, *present = real(self, *args)
        return (logits + 0.01, *present)

    monkeypatch.setattr(seq2seq._Decoder, "forward", shifted)
    config = parse_config({"models_dir": str(seq2seq_store / "models")})
    with pytest.raises(ModelLoadError, match="disagrees with PyTorch"):
        export_model("bart", config, "FP32", str(tmp_path / "ov"))
    assert not (tmp_path / "ov" / "bart").exists()


@pytest.mark.parametrize("missing", [ENCODER_XML, ENCODER_BIN, DECODER_XML, DECODER_BIN])
def test_a_missing_encoder_or_decoder_file_is_named_before_loading(seq2seq_store, tmp_path, missing):
    directory = shutil.copytree(seq2seq_store / "models" / "openvino" / "bart", tmp_path / "bart")
    (directory / missing).unlink()
    with pytest.raises(ModelLoadError, match=missing):
        check_ir_dir(directory, "bart")


def _config(store) -> str:
    path = store / "system.yaml"
    path.write_text(f"models_dir: {store / 'models'}\n")
    return str(path)


def test_data_aware_int4_is_refused_for_an_encoder_decoder_model(seq2seq_store, tmp_path, capsys):
    config = tmp_path / "system.yaml"
    config.write_text(json.dumps({"models_dir": str(seq2seq_store / "models")}))
    argv = ["--config", str(config), "export", "t5", "--precision", "INT4", "--awq", "--cache-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--awq and --scale-estimation calibrate decoder-only models" in err and "drop --awq" in err
    assert not (tmp_path / "t5-int4").exists()


def test_an_encoder_decoder_export_has_no_kl_so_a_kl_bar_refuses_it(seq2seq_store):
    manifest = json.loads((seq2seq_store / "models" / "openvino" / "t5-int8" / MANIFEST).read_text())
    quality = manifest["validation"]["quality"]
    assert quality["kl"] is None and quality["prompts"] == 1 and 0 <= quality["agreement"] <= 1
    assert Bar(max_kl=1.0).failures(quality) == ["KL unmeasured > max_kl 1.0"]
    assert Bar(min_agreement=0.0).failures(quality) == []
