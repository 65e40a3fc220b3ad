"""Runs each benchmark target in its own process and relates every result to PyTorch's."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from muai_core.errors import ConfigurationError
from muai_core.progress import Bar, Progress

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
    #: Concurrency levels; empty: one request at a time (``run_bench``), else ``run_concurrency``.
    concurrency: tuple[int, ...] = ()
    #: ``prompt_lookup`` of every generation (0: plain decoding).
    prompt_lookup: int = 0
    #: ``draft`` of every generation (None: the config's; "": none).
    draft: str | None = None


def run_bench(settings: BenchSettings, progress: Progress | None = None) -> list[dict[str, Any]]:
    """One row per target, with ratios against the first pytorch target."""
    progress = progress or Progress("muai bench")
    progress.steps = len(settings.targets)
    calls = settings.warmup + settings.runs
    rows = []
    for target in settings.targets:
        progress.step(f"{target.label}: load, {settings.warmup} warm-up + {settings.runs} timed runs")
        with progress.bar(calls, target.label) as bar:
            rows.append({"target": target.label, **run_worker(worker_spec(settings, target), bar)})
        progress.say(f"  {summary(rows[-1])}")
    return relate(rows)


def worker_spec(settings: BenchSettings, target: Target, **extra: Any) -> dict[str, Any]:
    return {
        "model": settings.model,
        "backend": target.backend,
        "precision": target.precision,
        "device": settings.device,
        "config": settings.config,
        "prompt": settings.prompt,
        "new_tokens": settings.new_tokens,
        "runs": settings.runs,
        "warmup": settings.warmup,
        "prompt_lookup": settings.prompt_lookup,
        "draft": settings.draft,
        **extra,
    }


def run_worker(spec: dict[str, Any], bar: Bar | None = None) -> dict[str, Any]:
    """Run one target in a worker process, showing its progress events on ``bar``; its result row."""
    command = [sys.executable, "-m", "muai_core.bench.worker", json.dumps(spec)]
    with tempfile.TemporaryFile("w+") as stderr:
        worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        expired = threading.Event()
        watchdog = threading.Timer(WORKER_TIMEOUT_S, lambda: (expired.set(), worker.kill()))
        watchdog.start()
        try:
            result = None
            for line in worker.stdout or ():
                message = _json(line)
                if "event" in message:
                    _show(message, bar)
                elif message:
                    result = message
            returncode = worker.wait()
        finally:
            watchdog.cancel()
        stderr.seek(0)
        errors = [line for line in stderr.read().splitlines() if line.strip()]
    if expired.is_set():
        return {"error": f"timed out after {WORKER_TIMEOUT_S} s"}
    if returncode != 0 or result is None:
        return {"error": errors[-1] if errors else f"worker exited with {returncode}"}
    return result


def _json(line: str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:  # something a library printed on stdout
        return {}
    return message if isinstance(message, dict) else {}


def _show(event: dict[str, Any], bar: Bar | None) -> None:
    if bar is None:
        return
    if event["event"] == "loaded":
        bar.say(f"  loaded in {event['load_s']:.1f} s")
    elif event["event"] == "call":
        kind = "warm-up" if event["warmup"] else "timed"
        bar.advance(f"{kind}, {event['seconds']:.1f} s, first token {event['ttft_ms']:.0f} ms")
    elif event["event"] == "round":
        kind = "warm-up" if event["warmup"] else "timed"
        bar.advance(f"{kind} round, {event['tokens']} tokens in {event['seconds']:.1f} s")


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
    ) + (
        ""
        if row.get("acceptance_rate") is None
        else f", speculation: {row['acceptance_rate']:.0%} accepted, {row['tokens_per_verify']:.2f} tokens a verify"
    )
