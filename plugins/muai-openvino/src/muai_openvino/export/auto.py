"""``muai export NAME --auto``: the cheapest precision whose figures against PyTorch meet a quality bar.

INT4, INT8, FP16 and FP32 are tried in that order, each written to a staging folder and measured; the first
that meets the bar is kept (the others are never written to their folders) and its manifest records every
candidate's figures and why it was kept or dropped.
"""

from __future__ import annotations

from typing import Any

from muai_core.config import MuaiConfig
from muai_core.errors import ModelLoadError
from muai_core.progress import Progress
from muai_core.quality import Bar
from muai_core.staging import staged_directory, target_lock
from muai_openvino.export.compress import Compression
from muai_openvino.export.pipeline import (
    MANIFEST,
    WRITABLE,
    ExportResult,
    load_source,
    locate,
    write_export,
    write_manifest,
)
from muai_openvino.export_layout import ir_dir_name

#: Cheapest first.
CANDIDATES = ("INT4", "INT8", "FP16", "FP32")


class _Dropped(Exception):
    """Leaves a candidate's staging folder without keeping it."""


def export_auto(
    name: str, config: MuaiConfig, bar: Bar, cache_dir: str | None = None, *, int4: Compression | None = None
) -> ExportResult:
    """Export ``name`` at the cheapest precision that meets ``bar``; ``int4`` sets the INT4 candidate's options."""
    where = locate(name, config, cache_dir)
    progress = Progress("muai export", steps=2 + 3 * len(CANDIDATES))
    source = load_source(where.source_dir, progress)
    tried: list[dict[str, Any]] = []
    for precision in CANDIDATES:
        compression = int4 if precision == "INT4" and int4 else Compression(precision)
        target = where.root / ir_dir_name(where.label, precision)
        try:
            with target_lock(target, hint=WRITABLE), staged_directory(target, MANIFEST, hint=WRITABLE) as staging:
                manifest = write_export(source, where, compression, staging, progress)
                figures = {k: v for k, v in manifest["validation"]["quality"].items() if k != "per_prompt"}
                missed = bar.failures(figures)
                verdict = f"dropped: {'; '.join(missed)}" if missed else "kept: meets the bar"
                tried.append(
                    {
                        "precision": precision,
                        "compression": compression.record(),
                        "quality": figures,
                        "verdict": verdict,
                    }
                )
                if missed:
                    progress.say(f"{precision} dropped: {'; '.join(missed)}")
                    raise _Dropped
                manifest["auto"] = {"bar": bar.record(), "candidates": tried}
                write_manifest(staging, manifest)
        except _Dropped:
            continue
        progress.say(f"kept {precision}: the cheapest precision that meets {bar.describe()}")
        return ExportResult(target, manifest, skipped=False)
    raise ModelLoadError(
        f"no precision of '{name}' meets {bar.describe()}: "
        + "; ".join(f"{c['precision']} {c['verdict'].removeprefix('dropped: ')}" for c in tried),
        hint="lower the bar (--max-kl, --min-agreement), or run the model on the pytorch backend",
    )
