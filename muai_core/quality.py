"""How closely one model's outputs follow a reference's, over muai's fixed prompt set.

For each prompt (``quality_prompts.txt``: one a line, ``\\n`` for a line break) both models decode
``tokens`` tokens greedily with EOS banned. The figures:

- ``agreement``: the share of positions where the two greedy continuations pick the same token;
- ``first_divergence``: the mean position of the first token where they part (``tokens`` when they never do);
- ``kl``: the mean KL divergence KL(reference || candidate) of the next-token distributions under teacher
  forcing on the reference's continuation (so every position sees the same context), in nats;
- ``teacher_forced_agreement``: the share of those positions where both put the same token on top.

A model is seen through a ``Runner``, two callables, so any backend can be measured (``muai verify`` runs
them through ``ModelManager.generate_result`` and ``forward``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from muai_core.errors import ConfigurationError, short_repr

TOKENS = 64
#: The ``tokenizer_digest`` of a model whose tokens are the UTF-8 bytes of the text.
BYTE_TOKENIZER = "utf-8 bytes"
#: The keys of a quality bar (``models.<name>.quality_bar``, ``muai export --auto``).
BAR_KEYS = ("max_kl", "min_agreement")
#: The per-model config key of a bar: ``models.<name>.quality_bar``.
QUALITY_BAR = "quality_bar"


@dataclass(frozen=True)
class Runner:
    """One model: ``greedy(prompt, n)`` -> the n new token ids (EOS banned); ``logits(ids)`` -> [len(ids), vocab]."""

    greedy: Callable[[str, int], Sequence[int]]
    logits: Callable[[Sequence[int]], Any]


@dataclass(frozen=True)
class PromptFigures:
    prompt: str
    agreement: float
    first_divergence: int
    kl: float
    teacher_forced_agreement: float
    reference: tuple[int, ...] = field(repr=False)
    candidate: tuple[int, ...] = field(repr=False)


@dataclass(frozen=True)
class Quality:
    agreement: float
    first_divergence: float
    kl: float
    teacher_forced_agreement: float
    prompts: int
    tokens: int
    per_prompt: tuple[PromptFigures, ...] = field(default=(), repr=False)

    def record(self) -> dict[str, Any]:
        """The figures for a manifest or JSON report (per prompt: the first divergence and KL)."""
        figures = {k: v for k, v in asdict(self).items() if k != "per_prompt"}
        figures = {k: round(v, 6) if isinstance(v, float) else v for k, v in figures.items()}
        figures["per_prompt"] = [
            {"first_divergence": p.first_divergence, "kl": round(p.kl, 6), "agreement": round(p.agreement, 4)}
            for p in self.per_prompt
        ]
        return figures


@dataclass(frozen=True)
class Bar:
    """A quality bar: the largest mean KL and/or the smallest greedy agreement an export may have."""

    max_kl: float | None = None
    min_agreement: float | None = None

    def failures(self, figures: Mapping[str, Any]) -> list[str]:
        """Why ``figures`` (a ``Quality.record()``) miss this bar; empty when they meet it."""
        missed = []
        kl, agreement = figures.get("kl"), figures.get("agreement")
        if self.max_kl is not None and not (isinstance(kl, (int, float)) and kl <= self.max_kl):
            missed.append(f"KL {_figure(kl, '.4g')} > max_kl {self.max_kl}")
        if self.min_agreement is not None and not (
            isinstance(agreement, (int, float)) and agreement >= self.min_agreement
        ):
            missed.append(f"agreement {_figure(agreement, '.1%')} < min_agreement {self.min_agreement:.1%}")
        return missed

    def describe(self) -> str:
        parts = [f"max_kl {self.max_kl}" if self.max_kl is not None else ""]
        parts.append(f"min_agreement {self.min_agreement}" if self.min_agreement is not None else "")
        return ", ".join(p for p in parts if p)

    def record(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def summary(figures: Mapping[str, Any]) -> str:
    """One line of a ``Quality.record()``: agreement, first divergence, KL and what was measured."""
    line = (
        f"greedy agreement {_figure(figures.get('agreement'), '.1%')}, first divergence at token "
        f"{_figure(figures.get('first_divergence'), '.1f')} (mean), KL {_figure(figures.get('kl'), '.4g')} "
        f"({figures.get('prompts')} prompt(s) x {figures.get('tokens')} tokens"
    )
    runtime = [f"{name} {figures[key]}" for key, name in (("inference_precision", "inference"),
               ("kv_cache_precision", "KV cache")) if figures.get(key)]  # fmt: skip
    return line + "".join(f"; {part}" for part in runtime) + ")"


def parse_bar(value: Any, key: str) -> Bar:
    """A ``Bar`` from a mapping such as ``{max_kl: 0.05, min_agreement: 0.8}``; ``key`` names it in errors."""
    example = f"e.g. {key}: {{max_kl: 0.05}} or {{min_agreement: 0.8}}"
    if not isinstance(value, Mapping) or not value or set(value) - set(BAR_KEYS):
        raise ConfigurationError(
            f"{key} must be a mapping with max_kl and/or min_agreement, got {short_repr(value)}", hint=example
        )
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number < float("inf"):
            raise ConfigurationError(f"{key}.{name} must be a number >= 0, got {short_repr(number)}", hint=example)
    if value.get("min_agreement", 0) > 1:
        raise ConfigurationError(
            f"{key}.min_agreement is a share from 0 to 1, got {value['min_agreement']}", hint=example
        )
    return Bar(value.get("max_kl"), value.get("min_agreement"))


def prompts() -> list[str]:
    """muai's quality prompts."""
    text = resources.files("muai_core").joinpath("quality_prompts.txt").read_text(encoding="utf-8")
    return [line.replace("\\n", "\n") for line in text.splitlines() if line.strip()]


class Harness:
    """Measures candidates against one reference; the reference's greedy continuations are computed once."""

    def __init__(
        self,
        reference: Runner,
        encode: Callable[[str], Sequence[int]],
        prompt_set: Sequence[str] | None = None,
        tokens: int = TOKENS,
    ) -> None:
        self.reference = reference
        self.encode = encode
        self.prompts = list(prompts() if prompt_set is None else prompt_set)
        self.tokens = tokens
        self._continuations: list[tuple[int, ...]] | None = None

    def continuations(self) -> list[tuple[int, ...]]:
        if self._continuations is None:
            self._continuations = [tuple(self.reference.greedy(p, self.tokens)) for p in self.prompts]
        return self._continuations

    def compare(self, candidate: Runner) -> Quality:
        figures = []
        for prompt, reference in zip(self.prompts, self.continuations(), strict=True):
            ours = tuple(candidate.greedy(prompt, self.tokens))
            ids = [*self.encode(prompt), *reference]
            start = len(ids) - len(reference) - 1  # the position that predicts the first new token
            kl, top1 = _teacher_forced(self.reference.logits(ids), candidate.logits(ids), start, len(reference))
            parted = first_divergence(reference, ours)
            figures.append(PromptFigures(prompt, agreement(reference, ours), parted, kl, top1, reference, ours))
        return Quality(
            agreement=float(np.mean([f.agreement for f in figures])),
            first_divergence=float(np.mean([f.first_divergence for f in figures])),
            kl=float(np.mean([f.kl for f in figures])),
            teacher_forced_agreement=float(np.mean([f.teacher_forced_agreement for f in figures])),
            prompts=len(figures),
            tokens=self.tokens,
            per_prompt=tuple(figures),
        )


def agreement(reference: Sequence[int], candidate: Sequence[int]) -> float:
    """The share of positions where the two token sequences agree (over the longer one)."""
    longest = max(len(reference), len(candidate))
    return sum(a == b for a, b in zip(reference, candidate, strict=False)) / longest if longest else 1.0


def first_divergence(reference: Sequence[int], candidate: Sequence[int]) -> int:
    """The first position where the two token sequences part (the shorter length where they never do)."""
    for position, (a, b) in enumerate(zip(reference, candidate, strict=False)):
        if a != b:
            return position
    return min(len(reference), len(candidate))


def _teacher_forced(reference: Any, candidate: Any, start: int, count: int) -> tuple[float, float]:
    """Mean KL(reference || candidate) and top-1 agreement over ``count`` positions from ``start``."""
    if count == 0:
        return 0.0, 1.0
    ref = _log_softmax(np.asarray(reference)[start : start + count])
    ours = _log_softmax(np.asarray(candidate)[start : start + count])
    kl = np.sum(np.exp(ref) * (ref - ours), axis=-1)
    top1 = np.argmax(ref, axis=-1) == np.argmax(ours, axis=-1)
    return float(np.mean(np.maximum(kl, 0.0))), float(np.mean(top1))


def _log_softmax(logits: Any) -> Any:
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _figure(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "unmeasured"
