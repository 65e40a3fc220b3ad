"""Benchmark output: a terminal table, markdown, JSON and a PNG chart."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muai_core.progress import Progress

#: "cold TTFT": the first call after loading; "TTFT" and the rest: the timed runs after the warm-up.
COLUMNS = ("target", "backend", "load s", "cold TTFT ms", "TTFT ms", "decode tok/s (min-max)", "p50 ms", "p95 ms",
           "peak RSS MiB", "greedy = pytorch", "speedup", "speculation accepted, tok/verify")  # fmt: skip


#: Below this share of PyTorch's greedy tokens, a target's bars are hatched and labelled in the chart.
LOW_AGREEMENT = 0.9
CHART_HINT = "pip install 'muai-core[bench]' for the chart"


def cells(row: dict[str, Any]) -> list[str]:
    if "error" in row:
        return [row["target"], "failed", row["error"][:60], *[""] * (len(COLUMNS) - 3)]
    tps = row["decode_tps"]
    agreement = row.get("agreement")
    return [
        row["target"],
        row["backend"],
        f"{row['load_s']:.2f}",
        f"{row['cold_ttft_ms']:.0f}",
        f"{row['ttft_ms']['median']:.0f}",
        f"{tps['median']:.1f} ({tps['min']:.1f}-{tps['max']:.1f})",
        f"{row['token_p50_ms']:.1f}",
        f"{row['token_p95_ms']:.1f}",
        f"{row['peak_rss_mb']:.0f}",
        "" if agreement is None else f"{agreement:.0%}",
        "" if "speedup" not in row else f"{row['speedup']:.2f}x",
        "" if row.get("acceptance_rate") is None else f"{row['acceptance_rate']:.0%}, {row['tokens_per_verify']:.2f}",
    ]


@dataclass(frozen=True)
class Layout:
    """A kind of benchmark row: its table's columns, a row's cells, and the chart of the rows (None: nothing ran)."""

    columns: tuple[str, ...]
    cells: Callable[[dict[str, Any]], list[str]]
    chart: Callable[[list[dict[str, Any]], str], Any]


def table(rows: list[dict[str, Any]], layout: Layout | None = None) -> str:
    layout = layout or SINGLE
    grid = [list(layout.columns), *(layout.cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(layout.columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in grid]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], title: str, layout: Layout | None = None) -> str:
    layout = layout or SINGLE
    heading = title.replace("\n", "; ")
    lines = [f"### {heading}", "", "| " + " | ".join(layout.columns) + " |", "|" + "---|" * len(layout.columns)]
    lines += ["| " + " | ".join(layout.cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write(
    rows: list[dict[str, Any]],
    out: Path,
    title: str,
    meta: dict[str, Any],
    progress: Progress | None = None,
    layout: Layout | None = None,
) -> list[Path]:
    """Write bench.json, bench.md and (where matplotlib is installed) bench.png; return the paths."""
    progress = progress or Progress("muai bench")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.md"]
    paths[0].write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(rows, title, layout), encoding="utf-8")
    png = out / "bench.png"
    skipped = plot(rows, png, title, layout)
    if skipped:
        png.unlink(missing_ok=True)  # a chart of an earlier run must not pass for this one's
        progress.say(f"{png.name} skipped: {skipped}")
    else:
        paths.append(png)
    return paths


def plot(rows: list[dict[str, Any]], path: Path, title: str, layout: Layout | None = None) -> str:
    """Save the chart of ``rows`` to ``path``; return why not, or "" once saved."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"matplotlib is not installed; {CHART_HINT}"
    figure = (layout or SINGLE).chart(rows, title)
    if figure is None:
        return "no target ran"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return ""


def chart(rows: list[dict[str, Any]], title: str) -> Any:
    """A matplotlib figure with a panel per measure, or None when no row has results.

    A target whose greedy tokens agree with PyTorch's on less than ``LOW_AGREEMENT`` of them is drawn
    hatched and labelled: its speed is not the speed of the same answer.
    """
    import matplotlib.pyplot as plt

    good = [r for r in rows if "error" not in r]
    if not good:
        return None
    labels = [r["target"] for r in good]
    low = [r.get("agreement") is not None and r["agreement"] < LOW_AGREEMENT for r in good]
    hatch = ["//" if flag else "" for flag in low]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    speed, first, load, memory = axes.flat

    tps = [r["decode_tps"]["median"] for r in good]
    spread = [[t - r["decode_tps"]["min"] for t, r in zip(tps, good, strict=True)],
              [r["decode_tps"]["max"] - t for t, r in zip(tps, good, strict=True)]]  # fmt: skip
    bars = speed.bar(labels, tps, yerr=spread, color="#4C72B0", hatch=hatch, edgecolor="black", capsize=4)
    for bar, row, flag in zip(bars, good, low, strict=True):
        notes = [f"{row['speedup']:.2f}x"] if "speedup" in row else []
        if flag:
            notes.insert(0, f"low agreement: {row['agreement']:.0%}")
        if notes:
            speed.annotate("\n".join(notes), (bar.get_x() + bar.get_width() / 2, row["decode_tps"]["max"]),
                           ha="center", va="bottom", xytext=(0, 3), textcoords="offset points",
                           color="#C44E52" if flag else "black")  # fmt: skip
    speed.margins(y=0.25)
    _panel(speed, "Decode speed", "tokens/s (median, min-max)")

    places = range(len(good))
    width = 0.4
    first.bar([x - width / 2 for x in places], [r["ttft_ms"]["median"] for r in good], width, label="warm (median)",
              color="#55A868", hatch=hatch, edgecolor="black")  # fmt: skip
    first.bar([x + width / 2 for x in places], [r["cold_ttft_ms"] for r in good], width, label="cold (first call)",
              color="#8172B2", hatch=hatch, edgecolor="black")  # fmt: skip
    first.set_xticks(list(places), labels)
    first.margins(y=0.2)
    first.legend(loc="upper left", ncols=2)
    _panel(first, "Time to first token", "ms")

    load.bar(labels, [r["load_s"] for r in good], color="#CCB974", hatch=hatch, edgecolor="black")
    _panel(load, "Load time", "seconds")
    memory.bar(labels, [r["peak_rss_mb"] for r in good], color="#DD8452", hatch=hatch, edgecolor="black")
    _panel(memory, "Peak memory", "peak RSS (MiB)")

    figure.suptitle(title)
    if any(low):
        figure.text(0.5, 0.005, f"hatched: greedy tokens agree with pytorch on less than {LOW_AGREEMENT:.0%}",
                    ha="center", va="bottom", color="#C44E52")  # fmt: skip
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return figure


def _panel(axis: Any, title: str, ylabel: str) -> None:
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.tick_params(axis="x", rotation=20)


SINGLE = Layout(COLUMNS, cells, chart)
