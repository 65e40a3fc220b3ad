"""After export: the IR must load through muai-openvino and agree with PyTorch on a fixed prompt."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, LoadRequest
from muai_core.errors import ModelLoadError

PROMPT = "The capital of France is Paris. The quick brown fox jumps over the lazy dog"
GREEDY_TOKENS = 16
FP32_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Validation:
    max_abs_diff: float
    token_agreement: float
    tokens_compared: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate(directory: Path, name: str, precision: str, torch_model: Any, tokenizer: Any) -> Validation:
    """Compare the export's logits and greedy tokens with the PyTorch model's; FP32 must match."""
    import torch

    from muai_openvino import generation, runtime

    ids = np.asarray([tokenizer(PROMPT).input_ids], dtype=np.int64)
    seq2seq = torch_model.config.is_encoder_decoder
    with torch.no_grad():
        generated = torch_model.generate(
            torch.from_numpy(ids),
            attention_mask=torch.ones_like(torch.from_numpy(ids)),
            max_new_tokens=GREEDY_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if seq2seq else tokenizer.eos_token_id,
            **(_plain_greedy(torch_model) if seq2seq else {}),
        )[0]
    # an encoder-decoder model's output starts with its decoder start token; its logits are the decoder's
    reference = generated[1:].tolist() if seq2seq else generated[ids.shape[1] :].tolist()
    inputs = {"input_ids": ids, **({"decoder_input_ids": generated[None].numpy()} if seq2seq else {})}
    handle = runtime.load(
        LoadRequest(name, "transformers", str(directory), True, "CPU", {}, {"openvino_path": str(directory)})
    )
    try:
        ov_logits = generation.forward(handle, inputs)["logits"]
        with torch.no_grad():
            pt_logits = torch_model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.float().numpy()
        diff = float(np.abs(ov_logits - pt_logits).max())
        ov_tokens = generation.generate(handle, GenerationRequest(PROMPT, max_new_tokens=GREEDY_TOKENS)).token_ids
    finally:
        runtime.unload(handle)
    compared = min(len(reference), len(ov_tokens))
    agreement = sum(a == b for a, b in zip(reference, ov_tokens, strict=False)) / max(compared, 1)
    result = Validation(diff, agreement, compared)
    if precision == "FP32" and (diff > FP32_TOLERANCE or list(ov_tokens) != reference):
        raise ModelLoadError(
            f"the FP32 export of '{name}' disagrees with PyTorch (max abs logit diff {diff:.2e}, "
            f"greedy token agreement {agreement:.0%})",
            hint="this architecture may not be supported by the exporter; run it on the pytorch backend",
        )
    return result


def _plain_greedy(torch_model: Any) -> dict[str, Any]:
    """``generate`` arguments that leave out what a seq2seq checkpoint's generation_config.json may add and muai
    does not apply (beams, forced BOS/EOS tokens, n-gram bans): the reference is greedy decoding alone."""
    from transformers import GenerationConfig

    own = torch_model.generation_config
    plain = GenerationConfig(
        decoder_start_token_id=own.decoder_start_token_id, eos_token_id=own.eos_token_id, pad_token_id=own.pad_token_id
    )
    return {"generation_config": plain}
