"""Benchmark output: a terminal table, markdown, JSON and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: "cold TTFT": the first call after loading; "TTFT" and the rest: the timed runs after the warm-up.
COLUMNS = ("target", "backend", "load s", "cold TTFT ms", "TTFT ms", "decode tok/s (min-max)", "p50 ms", "p95 ms",
           "peak RSS MiB", "greedy = pytorch", "speedup")  # fmt: skip


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
    ]


def table(rows: list[dict[str, Any]]) -> str:
    grid = [list(COLUMNS), *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in grid]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write(rows: list[dict[str, Any]], out: Path, title: str, meta: dict[str, Any]) -> list[Path]:
    """Write bench.json, bench.md and (where matplotlib is installed) bench.png; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.md"]
    paths[0].write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(rows, title), encoding="utf-8")
    chart = out / "bench.png"
    if plot(rows, chart, title):
        paths.append(chart)
    return paths


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    good = [r for r in rows if "error" not in r]
    if not good:
        return False
    labels = [r["target"] for r in good]
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    tps = [r["decode_tps"]["median"] for r in good]
    errors = [[t - r["decode_tps"]["min"] for t, r in zip(tps, good, strict=True)],
              [r["decode_tps"]["max"] - t for t, r in zip(tps, good, strict=True)]]  # fmt: skip
    bars = speed.bar(labels, tps, yerr=errors, color="#4C72B0", capsize=4)
    for bar, row in zip(bars, good, strict=True):
        if "speedup" in row:
            top = row["decode_tps"]["max"]
            speed.annotate(f"{row['speedup']:.2f}x", (bar.get_x() + bar.get_width() / 2, top),
                           ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")  # fmt: skip
    speed.set_ylabel("decode tokens/s (median, min-max)")
    speed.set_title("Decode speed")
    memory.bar(labels, [r["peak_rss_mb"] for r in good], color="#DD8452")
    memory.set_ylabel("peak RSS (MiB)")
    memory.set_title("Peak memory")
    for axis in (speed, memory):
        axis.tick_params(axis="x", rotation=20)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
