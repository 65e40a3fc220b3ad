"""Weight precision of an exported model: FP32 as traced, FP16 on save, INT8 per row, INT4 through NNCF.

INT8 is muai's own asymmetric per-row scheme (``compress_int8``): on SmolLM2-135M it agreed with PyTorch
better than NNCF's INT8_ASYM (greedy agreement 45% vs 37%, KL 0.0035 vs 0.0061 at f32 compute; README,
Precision), so it stays. INT4 is NNCF's (``nncf.compress_weights``), grouped, asymmetric or symmetric, with a
ratio of INT4 layers to INT8 ones and, optionally, the data-aware AWQ and scale estimation fed by the
calibration texts that ship with muai (``calibration.txt``; nothing is downloaded). NNCF keeps the embeddings
and the last layer in INT8.
"""

from __future__ import annotations

import logging
import sys
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np

from muai_core.errors import ConfigurationError

GROUP_SIZES = (32, 64, 128)
#: Constants smaller than this (norms, biases) stay in float.
MIN_COMPRESSED_ELEMENTS = 4096
#: Tokens of one calibration sample at most.
CALIBRATION_TOKENS = 128


@dataclass(frozen=True)
class Compression:
    """How the weights of an export are stored; the INT4 fields apply to INT4 only."""

    precision: str = "FP32"
    group_size: int = 64
    symmetric: bool = False
    ratio: float = 1.0
    awq: bool = False
    scale_estimation: bool = False

    def __post_init__(self) -> None:
        int4 = self.precision == "INT4"
        if self.group_size not in GROUP_SIZES:
            raise ConfigurationError(
                f"--group-size must be one of {', '.join(map(str, GROUP_SIZES))}, got {self.group_size}",
                hint="e.g. --precision INT4 --group-size 64",
            )
        if not 0 < self.ratio <= 1:
            raise ConfigurationError(
                f"--ratio must be in (0, 1], got {self.ratio}",
                hint="the share of layers in INT4 (the rest INT8), e.g. --ratio 0.8",
            )
        if not int4 and (self.symmetric or self.ratio != 1.0 or self.awq or self.scale_estimation):
            raise ConfigurationError(
                f"--sym, --ratio, --awq and --scale-estimation apply to --precision INT4, not {self.precision}",
                hint="add --precision INT4, or drop those flags",
            )

    @property
    def data_aware(self) -> bool:
        return self.awq or self.scale_estimation

    def record(self) -> dict[str, Any]:
        """What the manifest keeps: the fields that change the weights at this precision."""
        if self.precision != "INT4":
            return {"precision": self.precision}
        return asdict(self)


def compress(ov_model: Any, compression: Compression, tokenizer: Any, encoder_decoder: bool = False) -> Any:
    """``ov_model`` with its weights compressed as ``compression`` says (FP32/FP16: unchanged).

    The calibration inputs of AWQ and scale estimation are the decoder-only IR's: an encoder-decoder model
    gets INT4 without them.
    """
    if compression.data_aware and encoder_decoder:
        raise ConfigurationError(
            "--awq and --scale-estimation calibrate decoder-only models; this is an encoder-decoder model",
            hint="drop --awq/--scale-estimation (plain INT4 works), or use --precision INT8",
        )
    if compression.precision == "INT8":
        compress_int8(ov_model)
    if compression.precision != "INT4":
        return ov_model
    import nncf
    from nncf.common.logging import nncf_logger

    # stdout is muai export's result (the folder): NNCF's warnings go to stderr, its statistics table nowhere
    nncf.set_log_level(logging.WARNING)
    for handler in nncf_logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            handler.setStream(sys.stderr)
    with redirect_stdout(sys.stderr):  # its progress bars
        return _nncf_compress(nncf, ov_model, compression, tokenizer)


def _nncf_compress(nncf: Any, ov_model: Any, compression: Compression, tokenizer: Any) -> Any:
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    mode = nncf.CompressWeightsMode.INT4_SYM if compression.symmetric else nncf.CompressWeightsMode.INT4_ASYM
    dataset = nncf.Dataset(calibration_inputs(tokenizer)) if compression.data_aware else None
    return nncf.compress_weights(
        ov_model,
        mode=mode,
        group_size=compression.group_size,
        ratio=compression.ratio,
        dataset=dataset,
        awq=compression.awq,
        scale_estimation=compression.scale_estimation,
        # a layer whose width the group size does not divide gets the largest power of two that does
        advanced_parameters=AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST),
    )


def calibration_texts() -> list[str]:
    """The calibration paragraphs shipped with muai-openvino, one per line."""
    text = resources.files("muai_openvino.export").joinpath("calibration.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def calibration_inputs(tokenizer: Any) -> list[dict[str, np.ndarray]]:
    """One input of the stateful IR per calibration text (the state starts empty for each)."""
    inputs = []
    for text in calibration_texts():
        ids = np.asarray([tokenizer(text).input_ids[:CALIBRATION_TOKENS]], dtype=np.int64)
        inputs.append(
            {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None, :],
                "beam_idx": np.zeros(1, dtype=np.int32),
            }
        )
    return inputs


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
