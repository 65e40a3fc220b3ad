"""The table and chart of ``muai bench --concurrency``: throughput and latency against the number of clients."""

from __future__ import annotations

from typing import Any

from muai_core.bench.report import Layout

COLUMNS = ("target", "backend", "clients", "aggregate tok/s (min-max)", "vs 1 client", "TTFT p50/p95 ms",
           "per-token p50/p95 ms", "queue wait p50/p95 ms", "late TTFT ms", "peak RSS MiB")  # fmt: skip


def cells(row: dict[str, Any]) -> list[str]:
    if "error" in row:
        state = "refused" if row["error"].startswith("refused") else "failed"
        return [row["target"], state, str(row["concurrency"]), row["error"][:60], *[""] * (len(COLUMNS) - 4)]
    tps = row["aggregate_tps"]
    late = row["late_ttft_ms"]
    late_cell = "" if late is None else f"{late:.0f}"
    if "late_ttft_ratio" in row:
        late_cell += f" ({row['late_ttft_ratio']:.2f}x idle)"
    return [
        row["target"] + (f" ({row['failed_rounds']} round(s) failed)" if row["failed_rounds"] else ""),
        row["backend"],
        str(row["concurrency"]),
        f"{tps['median']:.1f} ({tps['min']:.1f}-{tps['max']:.1f})",
        "" if "speedup" not in row else f"{row['speedup']:.2f}x",
        _pair(row["ttft_ms"], "{:.0f}"),
        _pair(row["token_ms"], "{:.1f}"),
        _pair(row["queue_wait_ms"], "{:.0f}"),
        late_cell,
        f"{row['peak_rss_mb']:.0f}",
    ]


def _pair(quantiles: dict[str, float] | None, form: str) -> str:
    if quantiles is None:
        return ""
    return f"{form.format(quantiles['p50'])} / {form.format(quantiles['p95'])}"


def chart(rows: list[dict[str, Any]], title: str) -> Any:
    """Aggregate tokens/s (median, min-max) and per-token p95 against the number of clients, a line per target;
    None when no row has results."""
    import matplotlib.pyplot as plt

    good = [r for r in rows if "error" not in r]
    if not good:
        return None
    figure, (speed, latency) = plt.subplots(1, 2, figsize=(12, 5))
    for target in dict.fromkeys(r["target"] for r in good):
        mine = sorted((r for r in good if r["target"] == target), key=lambda r: r["concurrency"])
        levels = [r["concurrency"] for r in mine]
        tps = [r["aggregate_tps"]["median"] for r in mine]
        spread = [[t - r["aggregate_tps"]["min"] for t, r in zip(tps, mine, strict=True)],
                  [r["aggregate_tps"]["max"] - t for t, r in zip(tps, mine, strict=True)]]  # fmt: skip
        speed.errorbar(levels, tps, yerr=spread, marker="o", capsize=4, label=target)
        p95 = [(r["concurrency"], r["token_ms"]["p95"]) for r in mine if r["token_ms"]]
        latency.plot([level for level, _ in p95], [value for _, value in p95], marker="o", label=target)
    for axis, name, unit in ((speed, "Aggregate throughput", "new tokens/s, all clients (median, min-max)"),
                             (latency, "Per-token latency p95", "ms between tokens of a request")):  # fmt: skip
        axis.set_title(name)
        axis.set_xlabel("concurrent requests")
        axis.set_ylabel(unit)
        axis.set_xticks(sorted({r["concurrency"] for r in good}))
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


CONCURRENCY = Layout(COLUMNS, cells, chart)
