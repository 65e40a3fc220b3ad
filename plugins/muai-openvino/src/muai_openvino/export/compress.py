"""Weight precision of an exported model: FP32 as traced, FP16 on save, INT8 weight compression."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Constants smaller than this (norms, biases) stay in float.
MIN_COMPRESSED_ELEMENTS = 4096


def compress_int8(ov_model: Any) -> int:
    """Store each large 2-D weight of a MatMul or Gather as uint8 with a scale and zero point per row.

    OpenVINO runs the ``Convert -> Subtract -> Multiply`` decompression inside the matrix kernels,
    so weights stay 8-bit in memory. Returns how many weights were compressed.
    """
    import openvino as ov
    from openvino import opset13 as ops

    compressed = 0
    for op in ov_model.get_ops():
        if op.get_type_name() != "Constant":
            continue
        out = op.output(0)
        readers = list(out.get_target_inputs())
        if (
            out.get_element_type() != ov.Type.f32
            or len(out.get_shape()) != 2
            or not any(r.get_node().get_type_name() in ("MatMul", "Gather") for r in readers)
        ):
            continue
        weights = op.get_data()
        if weights.size < MIN_COMPRESSED_ELEMENTS:
            continue
        low, high = weights.min(axis=1, keepdims=True), weights.max(axis=1, keepdims=True)
        scale = (high - low) / 255.0
        scale[scale == 0] = 1.0
        zero_point = np.clip(np.rint(-low / scale), 0, 255)
        quantized = np.clip(np.rint(weights / scale) + zero_point, 0, 255).astype(np.uint8)
        restored = ops.multiply(
            ops.subtract(
                ops.convert(ops.constant(quantized), ov.Type.f32), ops.constant(zero_point.astype(np.float32))
            ),
            ops.constant(scale.astype(np.float32)),
        )
        for reader in readers:
            reader.replace_source_output(restored.output(0))
        compressed += 1
    ov_model.validate_nodes_and_infer_types()
    return compressed
