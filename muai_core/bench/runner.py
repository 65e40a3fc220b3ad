"""Runs each benchmark target in its own process and relates every result to PyTorch's."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from muai_core.errors import ConfigurationError

DEFAULT_PROMPT = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle. The keeper lives alone on a "
    "rocky island and has not spoken to anyone for many months."
)
WORKER_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Target:
    """A backend, optionally at a precision (``openvino:INT8``)."""

    backend: str
    precision: str = ""

    @classmethod
    def parse(cls, text: str) -> Target:
        backend, _, precision = text.strip().partition(":")
        if not backend:
            raise ConfigurationError(f"bad benchmark target {text!r}", hint="use BACKEND or BACKEND:PRECISION")
        return cls(backend, precision.upper())

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}".strip()


@dataclass
class BenchSettings:
    model: str
    targets: list[Target]
    prompt: str = DEFAULT_PROMPT
    new_tokens: int = 128
    runs: int = 3
    warmup: int = 1
    device: str = "cpu"
    config: str | None = None


def run_bench(settings: BenchSettings, progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per target, with ratios against the first pytorch target."""
    rows = []
    for index, target in enumerate(settings.targets, 1):
        progress(f"[{index}/{len(settings.targets)}] {target.label}: {settings.warmup} warm-up + {settings.runs} runs")
        spec = {
            "model": settings.model,
            "backend": target.backend,
            "precision": target.precision,
            "device": settings.device,
            "config": settings.config,
            "prompt": settings.prompt,
            "new_tokens": settings.new_tokens,
            "runs": settings.runs,
            "warmup": settings.warmup,
        }
        rows.append({"target": target.label, **run_worker(spec)})
        progress(f"      {summary(rows[-1])}")
    return relate(rows)


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, "-m", "muai_core.bench.worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        return {"error": errors[-1] if errors else f"worker exited with {done.returncode}"}
    return json.loads(lines[-1])


def relate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add speedup, TTFT, load and memory ratios and greedy agreement against the pytorch row."""
    reference = next((r for r in rows if r.get("backend") == "pytorch" and "error" not in r), None)
    for row in rows:
        if reference is None or "error" in row:
            continue
        row["speedup"] = row["decode_tps"]["median"] / reference["decode_tps"]["median"]
        row["ttft_ratio"] = row["ttft_ms"]["median"] / reference["ttft_ms"]["median"]
        row["load_ratio"] = row["load_s"] / reference["load_s"]
        row["rss_ratio"] = row["peak_rss_mb"] / reference["peak_rss_mb"]
        if not row["token_ids"]:  # a runner that reports text only
            continue
        same = 0
        for mine, theirs in zip(row["token_ids"], reference["token_ids"], strict=False):
            if mine != theirs:
                break
            same += 1
        row["agreement"] = same / max(len(reference["token_ids"]), 1)
    return rows


def summary(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"failed: {row['error']}"
    return (
        f"{row['decode_tps']['median']:.1f} tok/s, first token {row['ttft_ms']['median']:.0f} ms, "
        f"load {row['load_s']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MiB"
    )
