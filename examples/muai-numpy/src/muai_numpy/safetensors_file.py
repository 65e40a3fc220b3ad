"""Reading safetensors files into NumPy arrays, bf16 included (NumPy has no bf16: widened to fp32)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from muai_core.errors import ModelLoadError

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
MAX_HEADER = 100 * 2**20


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor in ``path`` as a float32 array."""
    data = path.read_bytes()
    try:
        (size,) = struct.unpack("<Q", data[:8])
        if size > MAX_HEADER:
            raise ValueError(f"header of {size} bytes")
        header = json.loads(data[8 : 8 + size])
    except (struct.error, ValueError) as exc:
        raise ModelLoadError(f"{path.name} is not a safetensors file: {exc}") from exc
    body = memoryview(data)[8 + size :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor(path, name, entry, body)
    return tensors


def _tensor(path: Path, name: str, entry: dict, body: memoryview) -> np.ndarray:
    try:
        dtype = DTYPES[entry["dtype"]]
        start, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        raw = np.frombuffer(body[start:end], dtype=dtype).reshape(shape)
    except KeyError as exc:
        raise ModelLoadError(
            f"{path.name}: tensor {name} has dtype {entry.get('dtype')!r}; muai-numpy reads F32, F16 and BF16"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path.name}: tensor {name} is damaged ({exc})", hint="re-download the model") from exc
    if dtype is np.uint16:
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)
