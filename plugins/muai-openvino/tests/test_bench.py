"""muai bench on real backends, each in its own process: table, JSON, markdown, chart, ratios."""

from __future__ import annotations

import json

from muai_core.cli import main


def test_bench_compares_backends_and_writes_every_output(write_config, tmp_path, capsys):
    config = write_config()
    argv = ["--config", config, "bench", "tiny-llama", "--backends", "pytorch,openvino,openvino:INT8"]
    argv += ["--runs", "2", "--new-tokens", "6", "--prompt", "Hello world", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    table, err = capsys.readouterr()
    assert "decode tok/s" in table and "cold TTFT ms" in table and "openvino INT8" in table
    # progress as it happens: a step per target, its load, and a line per generation call (not a tty: no bar)
    assert "muai bench: [3/3] openvino INT8: load, 1 warm-up + 2 timed runs" in err
    assert "muai bench:   loaded in" in err and "muai bench:   openvino INT8 1/3: warm-up" in err
    assert err.count("3/3: timed") == 3
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    rows = {row["target"]: row for row in data["rows"]}
    assert [rows[t]["backend"] for t in ("pytorch", "openvino", "openvino INT8")] == ["pytorch", "openvino", "openvino"]
    assert rows["openvino"]["agreement"] == 1.0 and rows["pytorch"]["speedup"] == 1.0
    assert rows["openvino INT8"]["model_info"]["precision"] == "INT8"
    for row in rows.values():
        assert (
            row["new_tokens"] == 6
            and row["decode_tps"]["min"] <= row["decode_tps"]["median"] <= row["decode_tps"]["max"]
        )
        assert row["peak_rss_mb"] >= row["rss_after_load_mb"] > 0
        assert row["cold_ttft_ms"] > 0 and row["ttft_ms"]["min"] > 0
    assert (tmp_path / "out" / "bench.md").read_text().count("\n| ") == 4
    assert (tmp_path / "out" / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_a_failing_target_is_reported_and_the_others_still_run(write_config, tmp_path, capsys):
    config = write_config({"openvino": {"cache_dir": str(tmp_path / "no-exports")}})
    argv = ["--config", config, "bench", "gpt2", "--backends", "openvino,pytorch", "--runs", "1"]
    argv += ["--new-tokens", "3", "--prompt", "Hi", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "failed: OpenVINO model file not found" in capsys.readouterr().err
    rows = json.loads((tmp_path / "out" / "bench.json").read_text())["rows"]
    assert "error" in rows[0] and rows[1]["backend"] == "pytorch" and rows[1]["new_tokens"] == 3
