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
from muai_core.inputs import token_arrays
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
    if request.resume_ids:  # a resumed generation continues after the tokens another backend produced
        resumed = torch.tensor([request.resume_ids], dtype=prompt_ids.dtype, device=prompt_ids.device)
        prompt_ids = torch.cat([prompt_ids, resumed], dim=1)
    eos = list(handle.eos_ids)
    config = GenerationConfig(
        max_new_tokens=budget,
        min_new_tokens=budget if request.ignore_eos else None,
        do_sample=request.do_sample,
        eos_token_id=eos or None,
        pad_token_id=eos[0] if eos else None,
        **_sampling(request),
    )

    def decode(ids: Any) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    clock = _TokenClock(TextStream(decode, request.streamer, request.resume_ids))
    started = time.perf_counter()
    with torch.inference_mode(), _seed_lock if request.seed is not None else nullcontext():
        if request.seed is not None:
            torch.manual_seed(request.seed)
        try:
            output = model.generate(
                prompt_ids,
                attention_mask=torch.ones_like(prompt_ids),
                generation_config=config,
                streamer=clock,
                stopping_criteria=[clock.stopping_criterion()],
            )
        except (InvalidInputError, UnsupportedRequest):
            raise
        except Exception as exc:
            if clock.streamer_failed:  # the caller's own error
                raise
            raise partial_generation(exc, clock.stream.token_ids) from exc
    new_ids = tuple(int(t) for t in output[0, prompt_tokens:].tolist())
    if eos and new_ids and new_ids[-1] in eos:
        finish = "eos"
    else:
        finish = "stopped" if clock.stream.stopped else "length"
    completion = tokenizer.decode(new_ids, skip_special_tokens=True)
    times = [started, *clock.times]
    return GenerationResult(
        text=tokenizer.decode(output[0].tolist(), skip_special_tokens=True) if request.keeps_prompt else completion,
        completion=completion,
        prompt_tokens=prompt_tokens,
        token_ids=new_ids,
        finish_reason=finish,
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
        )
    return {"logits": out.logits.float().cpu().numpy()}


def _sampling(request: GenerationRequest) -> dict[str, Any]:
    if not request.do_sample:
        return {}
    # transformers refuses an int temperature ("has to be a strictly positive float"); ours accepts any real
    return {"temperature": float(request.temperature), "top_k": request.top_k or None, "top_p": float(request.top_p)}


class _TokenClock:
    """A transformers streamer that timestamps each new token, streams text and can stop generation."""

    def __init__(self, stream: TextStream) -> None:
        self.stream = stream
        self.times: list[float] = []
        self.streamer_failed = False
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # transformers first hands over the prompt
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())
        try:
            for token in value.reshape(-1).tolist():
                self.stream.push(int(token))
        except BaseException:
            self.streamer_failed = True
            raise

    def end(self) -> None:
        try:
            self.stream.finish()
        except BaseException:
            self.streamer_failed = True
            raise

    def stopping_criterion(self) -> Any:
        import torch
        from transformers import StoppingCriteria

        stream = self.stream

        class _StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stream.stopped, dtype=torch.bool, device=input_ids.device)

        return _StopWhenAsked()
