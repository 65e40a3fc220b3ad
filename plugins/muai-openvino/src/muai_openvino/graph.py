"""Load-time changes to an exported graph and to the memory its weights occupy."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: madvise(2) advice: drop this process's mappings of the pages; a file's pages stay in the page cache.
MADV_DONTNEED = 4
PASS_THROUGH = ("Convert", "Reshape")
#: What a PagedAttention graph takes besides its cache tensors (``paged.PagedStep`` sets each of them).
PAGED_INPUTS = ("input_ids", "position_ids", "past_lens", "subsequence_begins", "block_indices_begins",
                "block_indices", "max_context_len")  # fmt: skip
CACHE_INPUTS = ("key_cache.", "value_cache.")


def logits_for_last_position(ov_model: Any, token_axis: int = 1) -> None:
    """Apply the LM head to the last position only, so a prefill does not compute logits it discards.

    ``token_axis``: 1 for the stateful graph's [batch, tokens, hidden], 0 for PagedAttention's [tokens, 1, hidden].
    """
    from openvino import opset13 as ops

    node = ov_model.output("logits").get_node().input_value(0).get_node()
    while node.get_type_name() in PASS_THROUGH:
        node = node.input_value(0).get_node()
    if node.get_type_name() != "MatMul":
        raise ValueError(f"the logits come from a {node.get_type_name()}, not the LM head's MatMul")
    hidden = node.input_value(0)
    last = ops.slice(
        hidden,
        np.array([-1], dtype=np.int64),
        np.array([np.iinfo(np.int64).max], dtype=np.int64),
        np.array([1], dtype=np.int64),
        np.array([token_axis], dtype=np.int64),
    )
    node.input(0).replace_source_output(last.output(0))
    ov_model.validate_nodes_and_infer_types()


def to_paged_attention(ov_model: Any) -> None:
    """Move the KV cache out of the graph's state into per-layer block tensors fed as inputs (PagedAttention).

    Raises ``ValueError`` when the result is not the graph ``paged.PagedStep`` drives.
    """
    from openvino._offline_transformations import paged_attention_transformation

    paged_attention_transformation(ov_model)
    names = {name for port in ov_model.inputs for name in port.get_names()}
    caches = {name for name in names if name.startswith(CACHE_INPUTS)}
    unknown, missing = names - caches - set(PAGED_INPUTS), set(PAGED_INPUTS) - names
    if not caches or unknown or missing:
        raise ValueError(
            f"the PagedAttention graph is not the one muai drives: KV cache inputs {len(caches)}, "
            f"unknown inputs {sorted(unknown)}, missing inputs {sorted(missing)}"
        )
    logits_for_last_position(ov_model, token_axis=0)


def release_mapped_pages(path: Path) -> None:
    """Unmap the pages of ``path`` from this process, leaving them in the page cache.

    OpenVINO maps the weights file and the CPU plugin also keeps repacked copies of most matrices, so
    after compilation both count in the process. Only read-only mappings are advised: their pages are the
    file's own, so a later read sees the same bytes, and the ones the runtime still reads in place (on CPU
    at FP32 one MLP matrix a layer, at INT8 every compressed one) come back from the page cache without I/O.
    MADV_PAGEOUT would evict them instead, and the first token would wait on the disk (SmolLM2 FP32: 0.6 s
    against 0.25 s).
    """
    if not sys.platform.startswith("linux"):
        return
    target = os.path.realpath(path)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == target and "w" not in fields[1]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if libc.madvise(start, end - start, MADV_DONTNEED) != 0:
                    log.debug("madvise(MADV_DONTNEED) failed for %s: errno %d", target, ctypes.get_errno())
