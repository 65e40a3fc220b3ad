"""muai bench's outputs and the progress lines of long commands: chart panels, low agreement, no matplotlib."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from muai_core.bench import report
from muai_core.progress import Progress


def row(target: str, tps: float, agreement: float | None = None, **extra: object) -> dict[str, object]:
    measured = {
        "target": target,
        "backend": target.split()[0],
        "load_s": 1.5,
        "cold_ttft_ms": 120.0,
        "ttft_ms": {"median": 40.0, "min": 38.0, "max": 45.0},
        "decode_tps": {"median": tps, "min": tps * 0.9, "max": tps * 1.1},
        "token_p50_ms": 1000 / tps,
        "token_p95_ms": 1200 / tps,
        "peak_rss_mb": 600.0,
        **extra,
    }
    if agreement is not None:
        measured["agreement"] = agreement
    return measured


ROWS = [
    row("pytorch", 30.0, 1.0, speedup=1.0),
    row("openvino", 60.0, 1.0, speedup=2.0),
    row("openvino INT8", 90.0, 0.41, speedup=3.0),
    {"target": "openvino FP16", "error": "OpenVINO model file not found"},
]


def test_without_matplotlib_the_chart_is_skipped_with_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    (tmp_path / "bench.png").write_bytes(b"an earlier run's chart")
    paths = report.write(ROWS, tmp_path, "title", {})
    assert [p.name for p in paths] == ["bench.json", "bench.md"]
    assert not (tmp_path / "bench.png").exists()
    err = capsys.readouterr().err
    assert "bench.png skipped: matplotlib is not installed" in err and "pip install 'muai-core[bench]'" in err
    assert len(json.loads((tmp_path / "bench.json").read_text())["rows"]) == 4


def test_the_chart_shows_speed_first_token_load_and_memory_and_flags_low_agreement():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    figure = report.chart(ROWS, "smollm2-135m: 40-token prompt")
    try:
        speed, first, load, memory = figure.axes
        titles = [a.get_title() for a in figure.axes]
        assert titles == ["Decode speed", "Time to first token", "Load time", "Peak memory"]
        assert [t.get_text() for t in first.get_legend().get_texts()] == ["warm (median)", "cold (first call)"]
        notes = [t.get_text() for t in speed.texts]
        assert notes == ["1.00x", "2.00x", "low agreement: 41%\n3.00x"]
        for axis in (speed, load, memory):
            assert [bar.get_hatch() or "" for bar in axis.patches] == ["", "", "//"]
        assert any("less than 90%" in t.get_text() for t in figure.texts)
    finally:
        plt.close(figure)


def test_no_flag_when_every_target_agrees_and_no_chart_without_results():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    figure = report.chart(ROWS[:2], "t")
    assert not any("agreement" in t.get_text() for axis in figure.axes for t in axis.texts + figure.texts)
    plt.close(figure)
    assert report.chart(ROWS[3:], "t") is None


def test_with_matplotlib_the_chart_is_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    paths = report.write(ROWS, tmp_path, "smollm2-135m: 40-token prompt, 128 new tokens, greedy", {})
    assert paths[-1] == tmp_path / "bench.png" and paths[-1].read_bytes()[:4] == b"\x89PNG"
    assert "skipped" not in capsys.readouterr().err


def test_steps_are_numbered_lines_on_stderr(capsys):
    progress = Progress("muai pull", steps=2)
    progress.step("reading")
    progress.say("note")
    progress.step("writing")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["muai pull: [1/2] reading", "muai pull: note", "muai pull: [2/2] writing"]


def test_a_bar_is_plain_lines_in_a_log_and_tqdm_on_a_terminal():
    log = io.StringIO()
    with Progress("muai bench", stream=log).bar(2, "pytorch") as bar:
        bar.advance("warm-up, 1.0 s")
        bar.say("loaded")
        bar.advance()
    assert log.getvalue().splitlines() == [
        "muai bench:   pytorch 1/2: warm-up, 1.0 s",
        "muai bench: loaded",
        "muai bench:   pytorch 2/2",
    ]
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    with Progress("muai bench", stream=terminal).bar(2, "pytorch") as bar:
        bar.advance("warm-up")
        bar.advance()
    assert "2/2" in terminal.getvalue() and "100%" in terminal.getvalue()


def test_the_demo_benchmarks_on_a_short_budget():
    """run-demo's bench stays a few minutes on a small machine; the full benchmark is muai bench's defaults."""
    demo = (Path(__file__).resolve().parents[2] / "run-demo").read_text(encoding="utf-8")
    flags = next(line for line in demo.splitlines() if line.startswith("bench=(")).split()
    assert int(flags[flags.index("--new-tokens") + 1]) <= 32 and int(flags[flags.index("--runs") + 1]) <= 2


def test_prompt_lookups_acceptance_and_tokens_per_verify_are_shown():
    from muai_core.bench.runner import summary
    from muai_core.bench.worker import speculation

    class Result:
        def __init__(self, calls: int, proposed: int, accepted: int) -> None:
            self.verify_calls, self.draft_tokens, self.accepted_tokens = calls, proposed, accepted

    figures = speculation([Result(4, 16, 8), Result(1, 4, 2)])
    assert figures == {"acceptance_rate": 0.5, "tokens_per_verify": 3.0}
    assert speculation([Result(0, 0, 0)]) == {"acceptance_rate": None, "tokens_per_verify": None}
    looked_up = row("openvino", 90.0, **figures)
    assert report.cells(looked_up)[-1] == "50%, 3.00" and report.cells(row("pytorch", 50.0))[-1] == ""
    assert "50% accepted, 3.00 tokens a verify" in summary(looked_up)
