"""Loading a causal or encoder-decoder LM and its tokenizer safely: safetensors only, no remote code."""

from __future__ import annotations

import gc
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from muai_core.batching import StepBatcher
from muai_core.contracts import LoadRequest
from muai_core.errors import ModelLoadError, first_line
from muai_core.inputs import CONTEXT_FIELDS, context_length
from muai_core.model_source import check_config_size, check_model_dir, eos_token_ids, json_object
from muai_core.seq2seq import SEQ2SEQ, check_model_type
from muai_core.text import vocab_digest
from muai_pytorch.batch import SlotEngine
from muai_pytorch.settings import parse_settings

MODEL_TYPES = ("transformers", SEQ2SEQ)
HUB_PROBE_SECONDS = 3.0
REDOWNLOAD = "download the model again, or restore its config.json"


@dataclass
class PyTorchModel:
    """The handle muai-pytorch hands to the core."""

    model: Any
    tokenizer: Any
    device: str
    dtype: str
    source: str
    context_length: int | None
    eos_ids: tuple[int, ...] = ()
    tokenizer_digest: str = ""  # muai_core.text.vocab_digest of the tokenizer's vocabulary
    lock: threading.Lock = field(default_factory=threading.Lock)
    engine: SlotEngine | None = None  # the KV slots of the sequences decoding now
    batcher: StepBatcher | None = None  # runs their decode steps together
    #: An encoder-decoder model (T5, BART): no batcher; its requests run one at a time under ``lock``.
    seq2seq: bool = False
    decoder_start_id: int = 0


def load(request: LoadRequest) -> PyTorchModel:
    request.require_model_type(MODEL_TYPES, "muai-pytorch")
    settings = parse_settings(request.device, request.settings)
    pickle = False
    if request.is_local:
        path = Path(request.source)
        pickle = check_model_dir(path, request.model_name, allow_pickle=settings.allow_pickle)
        check_config_size(path, json_object(path / "config.json", hint=REDOWNLOAD), request.model_name)
        offline = True
    else:
        offline = hub_offline()

    with quiet_progress():
        tokenizer, model = _load_both(request, settings, offline, pickle)
    model.to(settings.device).eval()
    config = model.config
    context = context_length({name: getattr(config, name, None) for name in CONTEXT_FIELDS}, request.model_name)
    eos = model.generation_config.eos_token_id  # generation_config.json's, else config.json's, else the tokenizer's
    if eos is None:
        eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    eos = eos_token_ids(eos, request.model_name)
    digest = vocab_digest(tokenizer.get_vocab())
    handle = PyTorchModel(model, tokenizer, settings.device, settings.dtype, request.source, context, eos, digest)
    if config.is_encoder_decoder:
        handle.seq2seq = True
        handle.decoder_start_id = _decoder_start_id(model, request.model_name)
    else:
        handle.engine = SlotEngine(model, settings.device, context)
        handle.batcher = StepBatcher(handle.engine)
    return handle


def _decoder_start_id(model: Any, name: str) -> int:
    """The token an encoder-decoder model's output starts from (generation_config.json's, else config.json's)."""
    start = model.generation_config.decoder_start_token_id
    start = model.config.decoder_start_token_id if start is None else start
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise ModelLoadError(
            f"the encoder-decoder model '{name}' has no decoder_start_token_id (got {start!r})",
            hint="set decoder_start_token_id in its config.json (T5: the pad token id; BART: the EOS id)",
        )
    return start


def _load_both(request: LoadRequest, settings: Any, offline: bool, pickle: bool) -> tuple[Any, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    config = _load_part(
        request,
        "config",
        lambda: AutoConfig.from_pretrained(request.source, trust_remote_code=False, local_files_only=offline),
    )
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    check_model_type(request.model_type, seq2seq, request.model_name)
    auto_class = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    tokenizer = _load_part(
        request,
        "tokenizer",
        lambda: AutoTokenizer.from_pretrained(request.source, trust_remote_code=False, local_files_only=offline),
    )

    def load_model() -> Any:
        with _from_pretrained:
            return auto_class.from_pretrained(
                request.source,
                config=config,
                dtype=getattr(torch, settings.dtype),
                use_safetensors=not pickle,  # transformers reads pickle with torch.load(weights_only=True)
                trust_remote_code=False,
                local_files_only=offline,
            )

    return tokenizer, _load_part(request, "model", load_model)


#: One ``from_pretrained`` at a time: transformers builds models on the meta device by patching torch globally,
#: so two threads loading at once (concurrent requests falling back together) break each other's weights.
_from_pretrained = threading.Lock()


@contextmanager
def quiet_progress() -> Iterator[None]:
    """transformers' progress bars ("Loading weights") off while models load, restored after the last one."""
    from transformers.utils import logging as hf_logging

    with _quiet.lock:
        if _quiet.loads == 0:
            _quiet.restore = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
        _quiet.loads += 1
    try:
        yield
    finally:
        with _quiet.lock:
            _quiet.loads -= 1
            if _quiet.loads == 0 and _quiet.restore:
                hf_logging.enable_progress_bar()


@dataclass
class _QuietLoads:
    lock: threading.Lock = field(default_factory=threading.Lock)
    loads: int = 0
    restore: bool = False


_quiet = _QuietLoads()


def memory_bytes(handle: PyTorchModel) -> int:
    """Bytes of the model's parameters and buffers (a tied weight counts once)."""
    if handle.model is None:
        return 0
    tensors = {t.data_ptr(): t for t in (*handle.model.parameters(), *handle.model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def hub_offline() -> bool:
    """True when the hub must not or cannot be reached: HF_HUB_OFFLINE is set, or a quick connect fails.

    Without this check an unreachable hub costs a long series of retries before the error.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=HUB_PROBE_SECONDS).close()
    except OSError:
        return True
    return False


def unload(handle: PyTorchModel) -> None:
    import torch

    handle.model = None
    handle.tokenizer = None
    handle.engine = handle.batcher = None  # the engine holds the model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _load_part(request: LoadRequest, part: str, load: Callable[[], Any]) -> Any:
    """Run a transformers loader; any failure becomes a ModelLoadError that says which part failed."""
    try:
        return load()
    except OSError as exc:
        raise ModelLoadError(
            f"cannot load the {part} of '{request.model_name}' from {_where(request)}: {first_line(exc)}",
            hint=_hub_hint(request) if not request.is_local else "check that the directory holds a complete model",
        ) from exc
    except Exception as exc:  # transformers, tokenizers and safetensors raise many types on damaged files
        files = "tokenizer.json / tokenizer_config.json" if part == "tokenizer" else "config.json / the weights"
        raise ModelLoadError(
            f"the {part} of '{request.model_name}' cannot be loaded ({files}): {type(exc).__name__}: {first_line(exc)}",
            hint="muai-pytorch loads AutoModelForCausalLM and AutoModelForSeq2SeqLM checkpoints; "
            "re-download or re-save the model",
        ) from exc


def _where(request: LoadRequest) -> str:
    return request.source if request.is_local else f"the Hugging Face hub ({request.source})"


def _hub_hint(request: LoadRequest) -> str:
    return (
        f"the Hugging Face hub is unreachable (or offline mode is on) and the model is not in its local cache; "
        f"put a local copy in models/{request.model_name}, e.g. with `muai pull {request.model_name}` "
        f"on a machine that reaches the hub, or from a local directory"
    )
