"""``muai models``' inventory: model folders in the project and the user home, with their exports and sizes."""

from __future__ import annotations

import json
from pathlib import Path

from muai_core.config import parse_config
from muai_core.inventory import installed_models


def write(path: Path, content: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def export(root: Path, folder: str, name: str, precision: str, size: int) -> None:
    write(root / "openvino" / folder / "muai-export.json", json.dumps({"name": name, "precision": precision}))
    write(root / "openvino" / folder / "openvino_model.bin", b"\0" * size)


def test_lists_models_with_their_exports_and_disk_size(monkeypatch, tmp_path):
    models = Path("models")
    write(models / "tiny" / "config.json", "{}")
    write(models / "tiny" / "model.safetensors", b"\0" * 1000)
    export(models, "tiny", "tiny", "FP32", 500)
    export(models, "tiny-int8", "tiny", "INT8", 100)
    write(models / "notes" / "readme.txt", "not a model")
    home = tmp_path / "home"
    monkeypatch.setenv("MUAI_HOME", str(home))
    write(home / "models" / "other" / "config.json", "{}")
    write(home / "models" / "other" / "pytorch_model.bin", b"\0" * 10)
    write(home / "models" / "tiny" / "config.json", "{}")  # shadowed by the project's

    listed = {m.name: m for m in installed_models(parse_config({}))}
    assert sorted(listed) == ["other", "tiny"]
    tiny = listed["tiny"]
    assert tiny.directory == models / "tiny"
    assert tiny.formats == ("safetensors", "openvino FP32", "openvino INT8")
    export_manifests = sum((models / "openvino" / f / "muai-export.json").stat().st_size for f in ("tiny", "tiny-int8"))
    assert tiny.size_bytes == 2 + 1000 + 500 + 100 + export_manifests
    assert listed["other"].formats == ("no safetensors",) and listed["other"].directory == home / "models" / "other"


def test_nothing_installed_is_an_empty_list():
    assert installed_models(parse_config({})) == []
