"""After export: the IR must load through muai-openvino, and its quality against PyTorch is measured.

The figures are ``muai_core.quality``'s over muai's prompt set, with the IR run as a default load runs it
(the inference and KV cache precisions read back from OpenVINO are recorded with them). An FP32 export must
match PyTorch: logits within ``FP32_TOLERANCE`` on a fixed prompt and next-token distributions within
``FP32_MAX_KL``. The harness runs decoder-only models; an encoder-decoder export is compared on the fixed
prompt alone (logits, and ``GREEDY_TOKENS`` greedy tokens, which at FP32 must be PyTorch's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, LoadRequest
from muai_core.errors import ModelLoadError
from muai_core.quality import Harness, Runner, agreement, first_divergence

PROMPT = "The capital of France is Paris. The quick brown fox jumps over the lazy dog"
FP32_TOLERANCE = 1e-3
FP32_MAX_KL = 1e-4
GREEDY_TOKENS = 16
UNSUPPORTED = "this architecture may not be supported by the exporter; run it on the pytorch backend"


@dataclass(frozen=True)
class Validation:
    max_abs_diff: float
    quality: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def torch_harness(torch_model: Any, tokenizer: Any) -> Harness:
    """The harness with the PyTorch FP32 model as the reference."""
    import torch

    def greedy(prompt: str, tokens: int) -> list[int]:
        ids = torch.tensor([tokenizer(prompt).input_ids])
        with torch.no_grad():
            out = torch_model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=tokens,
                min_new_tokens=tokens,  # EOS banned, as ignore_eos does
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        return out[0, ids.shape[1] :].tolist()

    def logits(ids: list[int]) -> Any:
        with torch.no_grad():
            return torch_model(torch.tensor([ids])).logits[0].float().numpy()

    return Harness(Runner(greedy, logits), lambda prompt: tokenizer(prompt).input_ids)


def openvino_runner(handle: Any) -> Runner:
    """A loaded export as the harness runs it: generation and forward passes of muai-openvino."""
    from muai_openvino import generation

    def greedy(prompt: str, tokens: int) -> tuple[int, ...]:
        request = GenerationRequest(prompt, max_new_tokens=tokens, ignore_eos=True)
        return generation.generate(handle, request).token_ids

    def logits(ids: list[int]) -> Any:
        return generation.forward(handle, {"input_ids": np.asarray([ids], dtype=np.int64)})["logits"][0]

    return Runner(greedy, logits)


def validate(directory: Path, name: str, precision: str, harness: Harness) -> Validation:
    """Measure the export in ``directory`` against the harness's reference; an FP32 export must match it."""
    from muai_openvino import generation, runtime

    handle = runtime.load(
        LoadRequest(name, "transformers", str(directory), True, "CPU", {}, {"openvino_path": str(directory)})
    )
    try:
        ids = harness.encode(PROMPT)
        ov_logits = generation.forward(handle, {"input_ids": np.asarray([ids], dtype=np.int64)})["logits"][0]
        diff = float(np.abs(ov_logits - harness.reference.logits(ids)).max())
        quality = harness.compare(openvino_runner(handle)).record()
        quality["inference_precision"] = handle.properties.get("INFERENCE_PRECISION_HINT")
        quality["kv_cache_precision"] = handle.properties.get("KV_CACHE_PRECISION")
    finally:
        runtime.unload(handle)
    if precision == "FP32" and (diff > FP32_TOLERANCE or quality["kl"] > FP32_MAX_KL):
        raise ModelLoadError(
            f"the FP32 export of '{name}' disagrees with PyTorch (max abs logit diff {diff:.2e}, "
            f"mean KL {quality['kl']:.2e}, greedy token agreement {quality['agreement']:.0%})",
            hint=UNSUPPORTED,
        )
    return Validation(diff, quality)


def validate_seq2seq(directory: Path, name: str, precision: str, torch_model: Any, tokenizer: Any) -> Validation:
    """Compare an encoder-decoder export's logits and greedy tokens with PyTorch's on ``PROMPT``."""
    import torch

    from muai_openvino import generation, runtime

    ids = np.asarray([tokenizer(PROMPT).input_ids], dtype=np.int64)
    with torch.no_grad():
        generated = torch_model.generate(
            torch.from_numpy(ids),
            attention_mask=torch.ones_like(torch.from_numpy(ids)),
            generation_config=_plain_greedy(torch_model),
        )[0]
    reference = generated[1:].tolist()  # the output starts with the decoder start token
    inputs = {"input_ids": ids, "decoder_input_ids": generated[None].numpy()}
    handle = runtime.load(
        LoadRequest(name, "transformers", str(directory), True, "CPU", {}, {"openvino_path": str(directory)})
    )
    try:
        ov_logits = generation.forward(handle, inputs)["logits"]
        with torch.no_grad():
            pt_logits = torch_model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.float().numpy()
        diff = float(np.abs(ov_logits - pt_logits).max())
        ours = generation.generate(handle, GenerationRequest(PROMPT, max_new_tokens=GREEDY_TOKENS)).token_ids
    finally:
        runtime.unload(handle)
    quality = {
        "agreement": round(agreement(reference, ours), 6),
        "first_divergence": first_divergence(reference, ours),
        "kl": None,
        "prompts": 1,
        "tokens": GREEDY_TOKENS,
    }
    if precision == "FP32" and (diff > FP32_TOLERANCE or list(ours) != reference):
        raise ModelLoadError(
            f"the FP32 export of '{name}' disagrees with PyTorch (max abs logit diff {diff:.2e}, "
            f"greedy token agreement {quality['agreement']:.0%})",
            hint=UNSUPPORTED,
        )
    return Validation(diff, quality)


def _plain_greedy(torch_model: Any) -> Any:
    """A generation config that leaves out what a seq2seq checkpoint's generation_config.json may add and muai
    does not apply (beams, forced BOS/EOS tokens, n-gram bans): the reference is greedy decoding alone."""
    from transformers import GenerationConfig

    own = torch_model.generation_config
    return GenerationConfig(
        decoder_start_token_id=own.decoder_start_token_id,
        eos_token_id=own.eos_token_id,
        pad_token_id=own.pad_token_id,
        max_new_tokens=GREEDY_TOKENS,
        do_sample=False,
    )
