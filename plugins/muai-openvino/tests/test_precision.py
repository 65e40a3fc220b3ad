"""INT4 through NNCF, the measured quality of an export, quality bars, ``--auto`` and ``muai verify``."""

from __future__ import annotations

import json

import pytest

from muai_core import ModelManager
from muai_core.cli import main
from muai_core.config import parse_config
from muai_core.errors import ModelLoadError
from muai_core.quality import Bar
from muai_openvino.export import auto
from muai_openvino.export_layout import MANIFEST


def figures(store, folder: str) -> dict:
    return json.loads((store / "models" / "openvino" / folder / MANIFEST).read_text())["validation"]["quality"]


def test_an_int4_export_loads_generates_and_shows_its_quality(write_config, capsys):
    config = write_config({"openvino": {"precision": "INT4"}})
    manager = ModelManager(backend="openvino", config_path=config)
    text = manager.generate("tiny-llama", "Hello", max_new_tokens=4)
    info = manager.get_model_info("tiny-llama")["model_info"]
    assert isinstance(text, str) and info["precision"] == "INT4"
    assert set(info["quality"]) >= {"agreement", "first_divergence", "kl", "prompts", "tokens"}
    assert "per_prompt" not in info["quality"]
    assert main(["--config", config, "explain", "tiny-llama", "--backend", "openvino"]) == 0
    assert "quality against PyTorch: greedy agreement" in capsys.readouterr().out


def test_an_export_below_the_models_quality_bar_is_refused_and_falls_back(store, write_config, capsys):
    models = {"tiny-llama": {"pytorch_path": str(store / "models" / "tiny-llama"), "quality_bar": {"max_kl": 0}}}
    config = write_config({"openvino": {"precision": "INT4"}, "priority": ["openvino", "pytorch"]}, models=models)
    assert main(["--config", config, "explain", "tiny-llama", "--backend", "openvino"]) == 2
    out = capsys.readouterr().out
    assert "misses models.tiny-llama.quality_bar: KL" in out and "> max_kl 0" in out
    assert "it runs on pytorch" in out
    config = write_config({"openvino": {"precision": "INT4", "enable_fallback": False}}, models=models)
    with pytest.raises(ModelLoadError) as info:
        ModelManager(backend="openvino", config_path=config).load_model("tiny-llama")
    assert "muai export tiny-llama --auto --max-kl 0" in info.value.hint


def test_an_export_that_meets_the_bar_loads(store, write_config):
    kl = figures(store, "tiny-llama-int4")["kl"]
    models = {"tiny-llama": {"pytorch_path": str(store / "models" / "tiny-llama"), "quality_bar": {"max_kl": kl}}}
    config = write_config({"openvino": {"precision": "INT4"}}, models=models)
    loaded = ModelManager(backend="openvino", config_path=config).load_model("tiny-llama")
    assert loaded.backend_name == "openvino"


def test_auto_keeps_the_cheapest_precision_that_meets_the_bar(store, tmp_path, capsys):
    kls = {p: figures(store, f"tiny-llama{s}")["kl"] for p, s in (("INT4", "-int4"), ("INT8", "-int8"))}
    assert kls["INT8"] < kls["INT4"]  # the bar below falls between them
    bar = (kls["INT4"] + kls["INT8"]) / 2
    config = tmp_path / "system.yaml"
    config.write_text(json.dumps({"models_dir": str(store / "models")}))
    argv = ["--config", str(config), "export", "tiny-llama", "--auto", "--max-kl", str(bar)]
    assert main([*argv, "--cache-dir", str(tmp_path / "ov")]) == 0
    out, err = capsys.readouterr()
    assert out == f"{tmp_path / 'ov' / 'tiny-llama-int8'}\n"
    assert "INT4 dropped: KL" in err and "kept INT8" in err
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["tiny-llama-int8"]  # INT4 left no folder
    manifest = json.loads((tmp_path / "ov" / "tiny-llama-int8" / MANIFEST).read_text())
    assert manifest["auto"]["bar"] == {"max_kl": bar}
    [int4, int8] = manifest["auto"]["candidates"]
    assert int4["precision"] == "INT4" and int4["verdict"].startswith("dropped: KL")
    assert int4["quality"]["kl"] == pytest.approx(kls["INT4"])
    assert (int8["precision"], int8["verdict"]) == ("INT8", "kept: meets the bar")


def test_auto_fails_when_no_precision_meets_the_bar(store, tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "CANDIDATES", ("INT4",))  # the one candidate, to keep the test short
    config = parse_config({"models_dir": str(store / "models")})
    with pytest.raises(ModelLoadError, match=r"no precision of 'gpt2' meets max_kl 0.0: INT4 KL") as info:
        auto.export_auto("gpt2", config, Bar(max_kl=0.0), str(tmp_path / "ov"))
    assert "--max-kl" in info.value.hint
    assert list((tmp_path / "ov").iterdir()) == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--precision", "INT4", "--group-size", "48"], "--group-size must be one of 32, 64, 128, got 48"),
        (["--group-size", "32"], "--group-size applies to --precision INT4, not FP32"),
        (["--precision", "INT8", "--sym"], "--sym, --ratio, --awq and --scale-estimation apply to --precision INT4"),
        (["--precision", "INT4", "--ratio", "1.5"], "--ratio must be in (0, 1]"),
        (["--auto"], "--auto needs a bar: --max-kl and/or --min-agreement"),
        (["--max-kl", "0.1"], "--max-kl and --min-agreement set the bar of --auto"),
        (["--auto", "--min-agreement", "2"], "--min-agreement a share from 0 to 1"),
        (["--auto", "--max-kl", "0.1", "--precision", "INT8"], "--auto chooses the precision itself"),
    ],
)
def test_export_flag_errors_name_the_flag(flags, message, capsys):
    assert main(["export", "tiny-llama", *flags]) == 2
    assert message in capsys.readouterr().err


def test_verify_an_export_against_pytorch(write_config, tmp_path, capsys):
    config = write_config()
    argv = ["--config", config, "verify", "tiny-llama", "--backends", "openvino:INT8,pytorch", "--tokens", "8"]
    options = ["--inference-precision", "f32", "--dynamic-quantization-group-size", "0"]
    assert main([*argv, *options, "--json", str(tmp_path / "v.json")]) == 0
    out = capsys.readouterr().out
    assert (
        "tiny-llama: openvino INT8 against pytorch (inference_precision f32, dynamic_quantization_group_size 0), "
        "18 prompts x 8 greedy tokens" in out
    )
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["runtime_options"] == {"inference_precision": "f32", "dynamic_quantization_group_size": 0}
    assert len(report["prompts"]) == 18
    assert 0 <= report["figures"]["agreement"] <= 1 and report["figures"]["kl"] >= 0
    assert main(["--config", config, "verify", "tiny-llama", "--backends", "openvino,pytorch", "--tokens", "8"]) == 0
    assert "greedy agreement   100.0%" in capsys.readouterr().out  # FP32 is token for token PyTorch's


def test_an_int4_export_prints_only_its_folder_on_stdout(store, tmp_path, capfd):
    config = tmp_path / "system.yaml"
    config.write_text(json.dumps({"models_dir": str(store / "models")}))
    argv = ["--config", str(config), "export", "gpt2", "--precision", "INT4", "--group-size", "128", "--sym"]
    assert main([*argv, "--awq", "--cache-dir", str(tmp_path / "ov")]) == 0
    out, err = capfd.readouterr()  # the file descriptors: NNCF's logger holds the process's own stdout
    assert out == f"{tmp_path / 'ov' / 'gpt2-int4'}\n"
    assert "muai export: [5/5] INT4:" in err
    manifest = json.loads((tmp_path / "ov" / "gpt2-int4" / MANIFEST).read_text())
    assert manifest["compression"] == {"precision": "INT4", "group_size": 128, "symmetric": True, "ratio": 1.0,
                                       "awq": True, "scale_estimation": False}  # fmt: skip
