"""muai bench --concurrency: its flag, the merging of rounds, the table and chart, the CPU in the title."""

from __future__ import annotations

import pytest

from muai_core.bench import report
from muai_core.bench.levels import merge, relate_levels
from muai_core.bench.levels_report import CONCURRENCY
from muai_core.bench.machine import cpu_description
from muai_core.cli import concurrency_levels, main
from muai_core.testing import CountingBackend, registered


@pytest.fixture(autouse=True)
def counting_backend():
    with registered(CountingBackend(), "counting"):
        yield


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--concurrency takes numbers of clients of at least 1, got '0'"),
        ("x", "--concurrency takes numbers of clients of at least 1, got 'x'"),
        ("1,-4", "--concurrency takes numbers of clients of at least 1, got '-4'"),
        ("2.5", "--concurrency takes numbers of clients of at least 1, got '2.5'"),
        ("", "--concurrency names no level: ''"),
        (" , ", "--concurrency names no level: ' , '"),
    ],
)
def test_bad_levels_are_refused_in_flag_language_before_any_work(capsys, value, message):
    assert main(["bench", "m", "--backends", "counting", "--concurrency", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"muai: error: {message}") and "\nhint: e.g. --concurrency 1,4,8,16" in err
    assert "muai bench:" not in err


def test_levels_are_sorted_once_each():
    assert concurrency_levels("8, 1,4,4,") == (1, 4, 8)


def worker_result(tps: float, ttfts: list[float], tokens: list[float], late: float | None = None) -> dict:
    return {
        "backend": "openvino", "precision": "INT8", "model_info": {}, "prompt_tokens": 30, "new_tokens": 4,
        "load_s": 1.0, "aggregate_tps": tps, "ttft_s": ttfts, "token_latencies_s": tokens,
        "queue_wait_s": [0.0] * len(ttfts), "late_ttft_s": late, "peak_rss_mb": 500.0,
    }  # fmt: skip


def test_rounds_merge_into_percentiles_over_all_requests_and_ratios_to_one_client():
    alone = merge("openvino INT8", 1, [worker_result(10.0, [0.1], [0.01, 0.02]), worker_result(12.0, [0.3], [0.03])])
    busy = merge(
        "openvino INT8",
        2,
        [worker_result(30.0, [0.2, 0.4], [0.05], late=0.4), {"error": "boom"}, worker_result(33.0, [0.6, 0.8], [])],
    )
    failed = merge("pytorch", 2, [{"error": "no model"}])
    rows = relate_levels([alone, busy, failed])
    assert alone["aggregate_tps"] == {"median": 11.0, "min": 10.0, "max": 12.0}
    assert alone["ttft_ms"] == pytest.approx({"p50": 200.0, "p95": 290.0})
    assert alone["token_ms"] == pytest.approx({"p50": 20.0, "p95": 29.0}) and alone["late_ttft_ms"] is None
    assert (busy["rounds"], busy["failed_rounds"], busy["last_error"]) == (2, 1, "boom")
    assert busy["speedup"] == pytest.approx(31.5 / 11.0) and busy["late_ttft_ratio"] == pytest.approx(2.0)
    assert busy["ttft_ms"] == pytest.approx({"p50": 500.0, "p95": 770.0})
    assert failed == {"target": "pytorch", "concurrency": 2, "error": "no model"}

    lines = report.table(rows, CONCURRENCY).splitlines()
    assert lines[0].split()[:3] == ["target", "backend", "clients"]
    assert "aggregate tok/s (min-max)" in lines[0] and "late TTFT ms" in lines[0]
    assert "11.0 (10.0-12.0)" in lines[2] and "200 / 290" in lines[2] and "20.0 / 29.0" in lines[2]
    assert "openvino INT8 (1 round(s) failed)" in lines[3] and "2.86x" in lines[3] and "400 (2.00x idle)" in lines[3]
    assert lines[4].split() == ["pytorch", "failed", "2", "no", "model"]
    markdown = report.markdown(rows, "t\ncpu", CONCURRENCY)
    assert markdown.startswith("### t; cpu\n") and markdown.count("\n| ") == 4


def test_the_chart_draws_throughput_and_p95_against_clients_a_line_per_target():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    rows = relate_levels([
        merge("openvino INT8", 1, [worker_result(10.0, [0.1], [0.01])]),
        merge("openvino INT8", 4, [worker_result(30.0, [0.1] * 4, [0.02] * 4)]),
        merge("pytorch", 4, [worker_result(20.0, [0.1] * 4, [0.04] * 4)]),
        merge("pytorch", 8, [{"error": "x"}]),
    ])  # fmt: skip
    figure = CONCURRENCY.chart(rows, "title")
    try:
        speed, latency = figure.axes
        assert [a.get_title() for a in figure.axes] == ["Aggregate throughput", "Per-token latency p95"]
        assert [t.get_text() for t in latency.get_legend().get_texts()] == ["openvino INT8", "pytorch"]
        assert [list(line.get_ydata()) for line in latency.lines] == [pytest.approx([10.0, 20.0]), [40.0]]
        assert list(speed.get_xticks()) == [1, 4]
    finally:
        plt.close(figure)
    assert CONCURRENCY.chart(rows[3:], "t") is None


def test_the_cpu_is_named_with_the_extensions_kernels_depend_on(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu avx2 avx512f amx_bf16 avx512_bf16\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    )
    assert cpu_description(cpuinfo) == "Intel(R) Xeon(R) Platinum 8480+ (avx2, avx512f, avx512_bf16, amx_bf16)"
    assert cpu_description(tmp_path / "absent")  # the platform's name, never empty
