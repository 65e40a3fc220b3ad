"""Generation and forward passes on a loaded PyTorch model."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.decoding import partial_generation
from muai_core.errors import InvalidInputError, UnsupportedRequest
from muai_core.inputs import position_ids, token_arrays
from muai_core.text import TextStream, prompt_text
from muai_pytorch.loading import PyTorchModel

#: torch's RNG is process-global: seeded generations take turns.
_seed_lock = threading.Lock()


def generate(handle: PyTorchModel, request: GenerationRequest) -> GenerationResult:
    import torch
    from transformers import GenerationConfig

    tokenizer, model = handle.tokenizer, handle.model
    prompt_ids = tokenizer(prompt_text(tokenizer, request), return_tensors="pt", add_special_tokens=not request.chat)
    prompt_ids = prompt_ids.input_ids.to(handle.device)
    prompt_tokens = prompt_ids.shape[1]
    if prompt_tokens == 0:
        raise InvalidInputError("the prompt encodes to no tokens", hint="pass some text the tokenizer can encode")
    budget = request.new_token_budget(prompt_tokens, handle.context_length) - len(request.resume_ids)
    request.check_token_ids(model.config.vocab_size)
    if request.resume_ids:  # a resumed generation continues after the tokens another backend produced
        resumed = torch.tensor([request.resume_ids], dtype=prompt_ids.dtype, device=prompt_ids.device)
        prompt_ids = torch.cat([prompt_ids, resumed], dim=1)
    eos, stop_ids = list(handle.eos_ids), list(request.stop_token_ids)
    enders = [*stop_ids, *([] if request.ignore_eos else eos)]  # min_new_tokens holds these back
    config = GenerationConfig(
        max_new_tokens=budget,
        min_new_tokens=max(request.min_new_tokens - len(request.resume_ids), 0) or None,
        suppress_tokens=eos if request.ignore_eos and eos else None,
        repetition_penalty=float(request.repetition_penalty),
        do_sample=request.do_sample,
        eos_token_id=enders or None,
        pad_token_id=(eos or stop_ids or [None])[0],
        **_sampling(request),
    )
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    clock = _TokenClock(TextStream(decode, request.streamer, request.stop, request.resume_ids, request.cancel))
    started = time.perf_counter()
    with torch.inference_mode(), _seed_lock if request.seed is not None else nullcontext():
        if request.seed is not None:
            torch.manual_seed(request.seed)
        try:
            output = model.generate(
                prompt_ids,
                attention_mask=torch.ones_like(prompt_ids),
                generation_config=config,
                stopping_criteria=[clock.stopping_criterion()],
            )
        except (InvalidInputError, UnsupportedRequest):
            raise
        except Exception as exc:
            if clock.streamer_failed:  # the caller's own error
                raise
            raise partial_generation(exc, clock.stream.token_ids) from exc
    clock.stream.finish()
    new_ids = tuple(int(t) for t in output[0, prompt_tokens:].tolist())
    completion = decode(new_ids)
    text = decode(output[0].tolist()) if request.keeps_prompt else completion
    times = [started, *clock.times]
    return GenerationResult(
        text=clock.stream.trim(text),
        completion=clock.stream.trim(completion),
        prompt_tokens=prompt_tokens,
        token_ids=new_ids,
        finish_reason=_finish_reason(new_ids, clock.stream, eos, request.ignore_eos, stop_ids),
        ttft_s=times[1] - started if len(times) > 1 else time.perf_counter() - started,
        token_latencies_s=tuple(b - a for a, b in zip(times[1:], times[2:], strict=False)),
    )


def forward(handle: PyTorchModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    ids, mask = token_arrays(inputs, handle.model.config.vocab_size, handle.context_length)
    with torch.inference_mode():
        out = handle.model(
            input_ids=torch.from_numpy(ids).to(handle.device),
            attention_mask=torch.from_numpy(mask).to(handle.device),
            position_ids=torch.from_numpy(position_ids(mask)).to(handle.device),
        )
    return {"logits": out.logits.float().cpu().numpy()}


def _finish_reason(
    new_ids: tuple[int, ...], stream: TextStream, eos: list[int], ignore_eos: bool, stop_ids: list[int]
) -> str:
    """The same reason ``decode_loop`` gives, read from what ended transformers' generate."""
    last = new_ids[-1] if new_ids else None
    if stream.stopped_by_string:
        return "stop"
    if last in eos and not ignore_eos:
        return "eos"
    if last in stop_ids:
        return "stop"
    return "stopped" if stream.stopped else "length"


def _sampling(request: GenerationRequest) -> dict[str, Any]:
    if not request.do_sample:
        return {}
    # transformers refuses an int temperature ("has to be a strictly positive float"); ours accepts any real
    return {"temperature": float(request.temperature), "top_k": request.top_k or None, "top_p": float(request.top_p)}


class _TokenClock:
    """Timestamps each new token and feeds it to the ``TextStream``, from a transformers stopping criterion.

    A criterion sees each token as soon as it is chosen (transformers hands its streamer the token only after
    the stopping criteria ran), so a stop string or a streamer's ``False`` ends generation on that very token.
    """

    def __init__(self, stream: TextStream) -> None:
        self.stream = stream
        self.times: list[float] = []
        self.streamer_failed = False

    def stopping_criterion(self) -> Any:
        import torch
        from transformers import StoppingCriteria

        clock = self

        class _StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                clock.times.append(time.perf_counter())
                try:
                    clock.stream.push(int(input_ids[0, -1]))
                except BaseException:
                    clock.streamer_failed = True
                    raise
                ended = clock.stream.ended
                return torch.full((input_ids.shape[0],), ended, dtype=torch.bool, device=input_ids.device)

        return _StopWhenAsked()
