"""muai bench --concurrency on a real backend: a process per level, every figure in the JSON and the table."""

from __future__ import annotations

import json

from muai_core.cli import main


def test_a_run_at_one_and_two_clients_writes_every_figure(tiny_models, tmp_path, capsys):
    argv = ["bench", tiny_models["llama"], "--backends", "pytorch", "--concurrency", "2,1", "--runs", "1"]
    argv += ["--warmup", "0", "--new-tokens", "4", "--prompt", "Hello", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    table, err = capsys.readouterr()
    assert "muai bench: [1/2] pytorch x1, round 1/1: load, 0 warm-up + 1 timed" in err
    assert "muai bench: [2/2] pytorch x2, round 1/1" in err and err.count("timed round, ") == 2
    header, rule, *lines = table.splitlines()
    assert "aggregate tok/s (min-max)" in header and "per-token p50/p95 ms" in header and len(lines) == 2
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["meta"]["concurrency"] == [1, 2] and data["meta"]["cpu"] in err
    alone, pair = data["rows"]
    assert (alone["concurrency"], pair["concurrency"], alone["speedup"]) == (1, 2, 1.0)
    for row in (alone, pair):
        assert row["backend"] == "pytorch" and row["new_tokens"] == 4 and row["rounds"] == 1
        assert row["aggregate_tps"]["min"] == row["aggregate_tps"]["median"] > 0
        assert 0 < row["ttft_ms"]["p50"] <= row["ttft_ms"]["p95"]
        assert 0 < row["token_ms"]["p50"] <= row["token_ms"]["p95"]
        assert 0 <= row["queue_wait_ms"]["p50"] <= row["queue_wait_ms"]["p95"] < row["ttft_ms"]["p95"]
    assert alone["late_ttft_ms"] is None and pair["late_ttft_ms"] > 0 and pair["late_ttft_ratio"] > 0
    assert (tmp_path / "out" / "bench.png").read_bytes()[:4] == b"\x89PNG"
