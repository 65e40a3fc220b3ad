"""Encoder-decoder (seq2seq) models such as T5 and BART: what every backend shares.

A backend that runs them decodes through ``decode_seq2seq``: its step encodes the prompt on the first call
(once per request) and then feeds decoder tokens, so every request feature of ``decode_loop`` (sampling,
stop strings, streaming, resuming on another backend) works unchanged. The decoder's own "prompt" is its
start token, hence:

- ``max_length`` counts output tokens as transformers does for encoder-decoder models: the decoder start
  token plus the new tokens (``max_length=20`` gives at most 19 new tokens); the prompt does not count.
- ``return_full_text`` has no effect: ``text`` is the output alone, as the prompt is not part of it.
- ``repetition_penalty`` counts the output tokens only (the decoder's inputs, as in transformers).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.decoding import Step, decode_loop
from muai_core.errors import InvalidInputError, ModelLoadError
from muai_core.inputs import token_arrays

#: The model type a caller may pass to ask for an encoder-decoder model explicitly.
SEQ2SEQ = "seq2seq"
SUPPORTING = "pytorch, openvino"


def is_encoder_decoder(config: Mapping[str, Any]) -> bool:
    """Whether a model's config.json describes an encoder-decoder model (``is_encoder_decoder: true``)."""
    return config.get("is_encoder_decoder") is True


def refuse_encoder_decoder(config: Mapping[str, Any], name: str, backend: str) -> None:
    """For backends that run decoder-only models: a ``ModelLoadError`` (so the next backend gets the model)
    when ``config`` describes an encoder-decoder model."""
    if is_encoder_decoder(config):
        raise ModelLoadError(
            f"{backend} runs decoder-only models; '{name}' is an encoder-decoder ({config.get('model_type')}) model",
            hint=f"run it on a backend that supports seq2seq models ({SUPPORTING}): put one first in its backends",
        )


def check_model_type(model_type: str, seq2seq: bool, name: str) -> None:
    """A model asked for as ``"seq2seq"`` must be one."""
    if model_type == SEQ2SEQ and not seq2seq:
        raise ModelLoadError(
            f"'{name}' was asked for as model_type 'seq2seq', but its config.json does not say is_encoder_decoder",
            hint="load it with model_type 'transformers'",
        )


def decode_seq2seq(
    make_step: Callable[[list[int]], Step],
    prompt_ids: Sequence[int],
    start_id: int,
    request: GenerationRequest,
    decode: Callable[[Sequence[int]], str],
    *,
    eos_ids: Collection[int] = (),
    context_length: int | None = None,
) -> GenerationResult:
    """Generate with an encoder-decoder model: ``make_step(prompt_ids)`` gives a step that encodes the prompt on
    its first call (whose ids are the decoder start token, then any resumed tokens) and decodes after that."""
    if not prompt_ids:
        raise InvalidInputError("the prompt encodes to no tokens", hint="pass some text the tokenizer can encode")
    if context_length is not None and len(prompt_ids) > context_length:
        raise InvalidInputError(
            f"the prompt has {len(prompt_ids)} tokens but the model's context holds {context_length}",
            hint="shorten the prompt",
        )
    if request.max_new_tokens is None and request.max_length < 2:
        raise InvalidInputError(
            f"max_length={request.max_length} leaves no room for output: for an encoder-decoder model it counts "
            "the output tokens, the decoder start token included",
            hint="raise max_length to 2 or more, or pass max_new_tokens",
        )
    output = replace(request, return_full_text=False)
    result = decode_loop(
        make_step(list(prompt_ids)), [start_id], output, decode, eos_ids=eos_ids, context_length=context_length
    )
    return replace(result, prompt_tokens=len(prompt_ids))


def seq2seq_arrays(
    inputs: Mapping[str, Any], vocab_size: int, context_length: int | None = None
) -> tuple[Any, Any, Any]:
    """``(input_ids, attention_mask, decoder_input_ids)`` of a seq2seq ``forward``, checked as ``token_arrays``
    checks them; without ``decoder_input_ids`` an ``InvalidInputError`` naming it."""
    if "decoder_input_ids" not in inputs:
        raise InvalidInputError(
            "an encoder-decoder model's forward needs decoder_input_ids (the output tokens so far)",
            hint="pass decoder_input_ids, e.g. [[decoder_start_token_id]] from the model's config.json",
        )
    encoder = {key: value for key, value in inputs.items() if key != "decoder_input_ids"}
    ids, mask = token_arrays(encoder, vocab_size, context_length)
    decoder_ids, _ = _decoder_arrays(inputs["decoder_input_ids"], vocab_size, context_length)
    if decoder_ids.shape[0] != ids.shape[0]:
        raise InvalidInputError(
            f"decoder_input_ids has {decoder_ids.shape[0]} rows but input_ids has {ids.shape[0]}",
            hint="pass one row of decoder tokens per input row",
        )
    return ids, mask, decoder_ids


def _decoder_arrays(value: Any, vocab_size: int, context_length: int | None) -> tuple[Any, Any]:
    try:
        return token_arrays({"input_ids": value}, vocab_size, context_length)
    except InvalidInputError as exc:
        raise InvalidInputError(
            "decoder_input_ids: " + exc.message.replace("input_ids", "decoder_input_ids"), hint=exc.raw_hint
        ) from exc
