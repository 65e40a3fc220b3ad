"""Generation and forward passes on a loaded PyTorch model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.decoding import decode_loop
from muai_core.errors import InvalidInputError
from muai_core.inputs import position_ids, token_arrays
from muai_core.text import prompt_text
from muai_pytorch import seq2seq
from muai_pytorch.loading import PyTorchModel


def generate(handle: PyTorchModel, request: GenerationRequest) -> GenerationResult:
    """Decode ``request`` through the model's step batcher: concurrent requests share each decode forward.

    An encoder-decoder model runs ``seq2seq.generate`` instead (one request at a time).
    """
    if handle.seq2seq:
        return seq2seq.generate(handle, request)
    tokenizer = handle.tokenizer
    prompt_ids = tokenizer(prompt_text(tokenizer, request), add_special_tokens=not request.chat).input_ids
    if not prompt_ids:
        raise InvalidInputError("the prompt encodes to no tokens", hint="pass some text the tokenizer can encode")
    longest = len(prompt_ids) + request.new_token_budget(len(prompt_ids), handle.context_length)
    request.check_token_ids(handle.model.config.vocab_size)
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    with handle.batcher.sequence(longest, cancel=request.cancel) as step:
        result = decode_loop(
            step, prompt_ids, request, decode, eos_ids=handle.eos_ids, context_length=handle.context_length
        )
    return replace(result, queue_wait_s=step.queue_wait_s)


def forward(handle: PyTorchModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    if handle.seq2seq:
        return seq2seq.forward(handle, inputs)
    ids, mask = token_arrays(inputs, handle.model.config.vocab_size, handle.context_length)
    with torch.inference_mode():
        out = handle.model(
            input_ids=torch.from_numpy(ids).to(handle.device),
            attention_mask=torch.from_numpy(mask).to(handle.device),
            position_ids=torch.from_numpy(position_ids(mask)).to(handle.device),
        )
    return {"logits": out.logits.float().cpu().numpy()}
