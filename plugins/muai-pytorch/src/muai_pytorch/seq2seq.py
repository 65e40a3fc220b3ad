"""Generation and forward passes on an encoder-decoder model (T5, BART): one request at a time per model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.seq2seq import decode_seq2seq, seq2seq_arrays
from muai_core.text import prompt_text
from muai_pytorch.loading import PyTorchModel


def generate(handle: PyTorchModel, request: GenerationRequest) -> GenerationResult:
    """Encode the prompt once, then decode token by token with the decoder's KV cache (``decode_seq2seq``)."""
    tokenizer = handle.tokenizer
    prompt_ids = tokenizer(prompt_text(tokenizer, request), add_special_tokens=not request.chat).input_ids
    request.check_token_ids(handle.model.config.vocab_size)
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    with handle.lock:
        return decode_seq2seq(
            lambda ids: Seq2SeqStep(handle, ids),
            prompt_ids,
            handle.decoder_start_id,
            request,
            decode,
            eos_ids=handle.eos_ids,
            context_length=handle.context_length,
        )


class Seq2SeqStep:
    """The first call runs the encoder on the prompt and the decoder on the given tokens; later calls feed the
    decoder one token each, reusing the encoder output and the self- and cross-attention caches."""

    def __init__(self, handle: PyTorchModel, prompt_ids: list[int]) -> None:
        self._handle = handle
        self._prompt = np.asarray([prompt_ids], dtype=np.int64)
        self._encoded: Any = None
        self._cache: Any = None

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        import torch
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        model, device = self._handle.model, self._handle.device
        with torch.inference_mode():
            if self._encoded is None:
                self._encoded = model.get_encoder()(input_ids=torch.from_numpy(self._prompt).to(device))
                self._cache = EncoderDecoderCache(DynamicCache(), DynamicCache())  # filled by each forward
            out = model(
                encoder_outputs=self._encoded,
                decoder_input_ids=torch.from_numpy(ids).to(device),
                cache=self._cache,
                use_cache=True,
            )
        return out.logits[0, -1].float().cpu().numpy()


def forward(handle: PyTorchModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"logits": [batch, decoder positions, vocab]}`` for ``input_ids`` (+ mask) and ``decoder_input_ids``."""
    import torch

    ids, mask, decoder_ids = seq2seq_arrays(inputs, handle.model.config.vocab_size, handle.context_length)
    with torch.inference_mode():
        out = handle.model(
            input_ids=torch.from_numpy(ids).to(handle.device),
            attention_mask=torch.from_numpy(mask).to(handle.device),
            decoder_input_ids=torch.from_numpy(decoder_ids).to(handle.device),
        )
    return {"logits": out.logits.float().cpu().numpy()}
