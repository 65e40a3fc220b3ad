"""Loading an exported model: file checks, device choice, compilation, and the handle."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muai_core.batching import StepBatcher
from muai_core.contracts import LoadRequest
from muai_core.errors import ModelLoadError, first_line, short_repr
from muai_core.inputs import context_length
from muai_core.model_source import directory_eos_ids, json_object
from muai_core.seq2seq import SEQ2SEQ, check_model_type, is_encoder_decoder
from muai_core.text_codec import TextCodec
from muai_openvino.blocks import BlockPool
from muai_openvino.export_layout import (
    BIN,
    DECODER_BIN,
    DECODER_XML,
    ENCODER_BIN,
    XML,
    check_ir_dir,
    export_command,
    ir_dir,
)
from muai_openvino.graph import logits_for_last_position, to_paged_attention
from muai_openvino.mapped_weights import read_mapped, released_while
from muai_openvino.paged import PagedCache, PagedEngine
from muai_openvino.seq2seq import compile_seq2seq, decoder_start_id
from muai_openvino.settings import (
    OpenVINOSettings,
    available_device,
    exports_root,
    parse_settings,
    writable_cache_dir,
)
from muai_openvino.warm_up import warm_up

log = logging.getLogger(__name__)

REEXPORT = "export the model again"
MODEL_TYPES = ("transformers", SEQ2SEQ)
INPUTS = ("input_ids", "attention_mask", "position_ids", "beam_idx")
READ_BACK = ("EXECUTION_DEVICES", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "KV_CACHE_PRECISION",
             "INFERENCE_PRECISION_HINT", "DYNAMIC_QUANTIZATION_GROUP_SIZE")  # fmt: skip

_core: Any = None
_core_lock = threading.Lock()


def shared_core() -> Any:
    """One ``openvino.Core`` per process (it owns plugins and their caches)."""
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


@dataclass
class OpenVINOModel:
    """The handle muai-openvino hands to the core: a compiled model, its tokenizer, and its KV cache blocks.

    ``paged_cache`` and ``batcher`` are None when generation runs the stateful graph (the KV cache inside
    OpenVINO, one request at a time); else concurrent generations share the batcher's steps.
    """

    compiled: Any
    request: Any
    codec: TextCodec
    directory: Path
    manifest: dict[str, Any]
    requested_device: str
    context_length: int | None
    vocab_size: int
    eos_ids: frozenset[int]
    properties: dict[str, str]
    device: str = "CPU"
    #: The devices the compiled model runs on, as OpenVINO lists them (e.g. ``("CPU",)`` for AUTO on a CPU).
    execution_devices: tuple[str, ...] = ()
    compile_properties: dict[str, str] = field(default_factory=dict)
    full_logits_request: Any = None
    paged_cache: PagedCache | None = None
    batcher: StepBatcher | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: An encoder-decoder export: its encoder's infer request (``compiled``/``request`` are the decoder's).
    encoder: Any = None
    decoder_start_id: int = 0

    def all_positions_request(self) -> Any:
        """An infer request whose logits cover every position (for ``forward``), compiled on first use.

        Generation runs a graph that computes logits for the last position only.
        """
        if self.full_logits_request is None:
            core = shared_core()
            model, _ = read_mapped(core, self.directory / XML, self.directory / BIN, mmap=True)
            compiled = core.compile_model(model, self.device, self.compile_properties)
            self.full_logits_request = compiled.create_infer_request()
        return self.full_logits_request


def load(request: LoadRequest) -> OpenVINOModel:
    request.require_model_type(MODEL_TYPES, "muai-openvino")
    settings = parse_settings(request.device, request.settings)
    directory = ir_dir(request, exports_root(request.models_dir, settings.cache_dir), settings.precision)
    exported = (directory / XML).is_file() or (directory / DECODER_XML).is_file()
    if not exported and not (request.is_local and Path(request.source).is_dir()):
        raise ModelLoadError(  # not the export hint of check_ir_dir: there is nothing to export
            f"no OpenVINO export of '{request.model_name}' in {directory}, and no local model to export one from",
            hint=f"check the model name; an export kept elsewhere is found through models.{request.model_name}"
            ".openvino_path in the config",
        )
    manifest = check_ir_dir(directory, request.model_name, settings.precision)
    config = json_object(directory / "config.json", hint=REEXPORT)
    context = context_length(config, request.model_name)
    seq2seq = is_encoder_decoder(config)
    check_model_type(request.model_type, seq2seq, request.model_name)
    core = shared_core()
    device = available_device(settings.device, core.available_devices)
    properties = _properties(settings, manifest, device)
    hint = f"export it again: {export_command(request.model_name, settings.precision)}"
    encoder = None
    try:
        if seq2seq:  # its own step under the lock (no paged batching): muai_openvino.seq2seq
            encoder, compiled = compile_seq2seq(core, directory, device, properties, settings.mmap, hint)
            paged = False
        else:
            compiled, paged = _compile(core, directory, device, properties, settings, hint)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"OpenVINO could not compile {directory / (DECODER_XML if seq2seq else XML)} for {device}: "
            f"{first_line(exc)}",
            hint=f"the IR may be damaged; {hint}",
        ) from exc
    handle = OpenVINOModel(
        compiled=compiled,
        request=compiled.create_infer_request(),
        codec=TextCodec(directory, hint=hint),
        directory=directory,
        manifest=manifest,
        requested_device=settings.device,
        context_length=context,
        vocab_size=_vocab_size(compiled, config.get("vocab_size"), directory, hint),
        eos_ids=directory_eos_ids(directory, config, request.model_name, hint=REEXPORT),
        properties=_read_back(compiled),
        device=device,
        execution_devices=_execution_devices(compiled),
        compile_properties=properties,
    )
    if encoder is not None:
        handle.encoder = encoder.create_infer_request()
        handle.decoder_start_id = decoder_start_id(directory, config, request.model_name, REEXPORT)
    if paged:
        handle.paged_cache = PagedCache(compiled)
        handle.batcher = _batcher(handle, settings)
    return handle


def _compile(
    core: Any, directory: Path, device: str, properties: dict[str, str], settings: OpenVINOSettings, hint: str
) -> tuple[Any, bool]:
    """The compiled causal model, and whether it runs the PagedAttention graph (else the stateful one)."""
    ov_model, mapped = read_mapped(core, directory / XML, directory / BIN, settings.mmap)
    names = {name for port in ov_model.inputs for name in port.get_names()}
    if not set(INPUTS) <= names:
        raise ModelLoadError(
            f"{directory / XML} lacks the inputs of a stateful muai export ({', '.join(sorted(set(INPUTS) - names))})",
            hint=hint,
        )
    paged = settings.attention == "paged" and device == "CPU"
    if paged and not _paged(ov_model, directory):  # a failed transformation may have changed the graph
        del ov_model  # its ranges are not released: another model may take their addresses once it is gone
        paged, (ov_model, mapped) = False, read_mapped(core, directory / XML, directory / BIN, settings.mmap)
    if not paged:
        logits_for_last_position(ov_model)
    with released_while(mapped):  # ov_model maps them until it is deleted after the block
        compiled = core.compile_model(ov_model, device, properties)
        warm_up(compiled, paged)
    del ov_model
    return compiled, paged


def _batcher(handle: OpenVINOModel, settings: OpenVINOSettings) -> StepBatcher:
    cache = handle.paged_cache
    budget = settings.kv_cache_bytes or default_kv_cache_bytes()
    pool = BlockPool(cache.block_size, max(1, budget // cache.block_bytes), settings.prefix_cache)
    return StepBatcher(
        PagedEngine(handle, pool), max_batch_tokens=settings.max_batch_tokens, max_waiting=settings.max_waiting
    )


def default_kv_cache_bytes() -> int:
    """A quarter of the memory free now, at most 4 GiB (the cache grows to it only as sequences need)."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # a system that does not tell
        free = 4 << 30
    return max(64 << 20, min(free // 4, 4 << 30))


def _vocab_size(compiled: Any, claimed: Any, directory: Path, hint: str) -> int:
    """The vocabulary the IR's logits cover; config.json's ``vocab_size`` must agree (it decides which ids pass)."""
    dimension = compiled.output("logits").get_partial_shape()[2]
    if dimension.is_static:
        if claimed is not None and claimed != dimension.get_length():
            raise ModelLoadError(
                f"{directory / 'config.json'} says vocab_size is {short_repr(claimed)}, but the IR's logits cover "
                f"{dimension.get_length()} tokens",
                hint=f"config.json does not belong to this export; {hint}",
            )
        return dimension.get_length()
    if isinstance(claimed, int) and not isinstance(claimed, bool) and claimed > 0:
        return claimed
    raise ModelLoadError(
        f"the vocabulary size of {directory} is unknown: the IR's logits are dynamic and config.json's vocab_size "
        f"is {short_repr(claimed)}",
        hint=hint,
    )


def _paged(ov_model: Any, directory: Path) -> bool:
    """Turn ``ov_model`` into its PagedAttention form; False (and a warning) where that fails."""
    try:
        to_paged_attention(ov_model)
    except (ImportError, RuntimeError, ValueError) as exc:
        log.warning(
            "%s: PagedAttention unavailable (%s); generation runs the stateful graph", directory, first_line(exc)
        )
        return False
    return True


def unload(handle: OpenVINOModel) -> None:
    with handle.lock:
        handle.request = handle.encoder = None
        handle.compiled = None
        handle.full_logits_request = None
        handle.paged_cache = None
        handle.batcher = None


def memory_bytes(handle: OpenVINOModel) -> int:
    """The IR's weights (what the compiled model holds at least: the CPU plugin may repack more) and the KV cache
    blocks allocated so far."""
    files = (ENCODER_BIN, DECODER_BIN) if handle.encoder is not None else (BIN,)
    weights = [handle.directory / file for file in files]
    if handle.compiled is None or not all(w.is_file() for w in weights):
        return 0
    cache = handle.paged_cache
    return sum(w.stat().st_size for w in weights) + (cache.blocks * cache.block_bytes if cache is not None else 0)


def _properties(settings: OpenVINOSettings, manifest: dict[str, Any], device: str) -> dict[str, str]:
    properties = {"PERFORMANCE_HINT": settings.performance_hint, "NUM_STREAMS": str(settings.num_streams)}
    if settings.compile_cache_dir:  # off by default: importing a cached blob costs a second copy of the weights
        properties["CACHE_DIR"] = writable_cache_dir(settings.compile_cache_dir)
    if settings.inference_num_threads:
        properties["INFERENCE_NUM_THREADS"] = str(settings.inference_num_threads)
    if device == "CPU":
        # f32 arithmetic (an FP32 export, or asked for) means an f32 KV cache too: OpenVINO's CPU default keeps it
        # in u8, whose rounding differs between a step of one token and a verify step of several (a near tie then
        # flips). Another compute precision takes the KV cache the device picks (PagedAttention wants it).
        full_precision = manifest.get("precision") == "FP32" and settings.inference_precision in (None, "f32")
        kv = settings.kv_cache_precision or ("f32" if full_precision or settings.inference_precision == "f32" else None)
        if kv:
            properties["KV_CACHE_PRECISION"] = kv
        if full_precision:
            properties["INFERENCE_PRECISION_HINT"] = "f32"
    if settings.inference_precision:
        properties["INFERENCE_PRECISION_HINT"] = settings.inference_precision
    if settings.dynamic_quantization_group_size is not None:
        properties["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(settings.dynamic_quantization_group_size)
    return properties


def _execution_devices(compiled: Any) -> tuple[str, ...]:
    try:
        return tuple(compiled.get_property("EXECUTION_DEVICES"))
    except RuntimeError:  # a device that does not report it
        return ()


def _read_back(compiled: Any) -> dict[str, str]:
    values = {}
    for name in READ_BACK:
        try:
            value = compiled.get_property(name)
        except RuntimeError:  # a property the device does not report
            continue
        if hasattr(value, "to_string"):  # an element type such as f32
            values[name] = value.to_string()
        else:
            values[name] = getattr(value, "name", None) or str(value)
    return values
