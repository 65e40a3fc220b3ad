"""What the benchmark ran on: the CPU's model name and the vector and matrix extensions OpenVINO picks kernels by."""

from __future__ import annotations

import platform
from pathlib import Path

#: The /proc/cpuinfo flags that decide which kernels (and KV cache precisions) OpenVINO uses.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """E.g. ``"AMD EPYC 9R14 (avx2, avx512f, avx512_bf16)"``; the platform's processor name without cpuinfo."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    flags = set(fields.get("flags", "").split())
    present = [flag for flag in FLAGS if flag in flags]
    return f"{name} ({', '.join(present)})" if present else name
