"""Choosing the next token: banned ids (``ignore_eos``) never come out, greedy or sampled."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from muai_core.contracts import GenerationRequest
from muai_core.decoding import decode_loop
from muai_core.errors import InvalidInputError
from muai_core.sampling import Penalty, next_token

logits = arrays(np.float32, st.integers(2, 40), elements=st.floats(-20, 20, width=32))


@settings(max_examples=200)
@given(logits, st.data())
def test_greedy_takes_the_best_id_that_is_not_banned(scores, data):
    banned = data.draw(st.lists(st.integers(0, scores.size - 1), max_size=scores.size - 1, unique=True))
    allowed = np.setdiff1d(np.arange(scores.size), banned)
    request = GenerationRequest.from_kwargs("x", max_new_tokens=1)
    token = next_token(scores, request, np.random.default_rng(0), banned)
    assert token not in banned
    assert scores[token] == scores[allowed].max()


@settings(max_examples=200)
@given(logits, st.data(), st.integers(0, 2**32 - 1))
def test_a_sample_is_never_a_banned_id(scores, data, seed):
    banned = data.draw(st.lists(st.integers(0, scores.size - 1), max_size=scores.size - 1, unique=True))
    request = GenerationRequest.from_kwargs(
        "x",
        max_new_tokens=1,
        temperature=data.draw(st.floats(0.1, 3)),
        top_k=data.draw(st.integers(0, scores.size)),
        top_p=data.draw(st.floats(0.05, 1)),
    )
    assert next_token(scores, request, np.random.default_rng(seed), banned) not in banned


def test_the_logits_a_step_returns_are_not_changed():
    scores = np.array([0.0, 5.0, 1.0], dtype=np.float32)
    kept = scores.copy()
    request = GenerationRequest.from_kwargs("x", max_new_tokens=1)
    assert next_token(scores, request, np.random.default_rng(0), [1]) == 2
    np.testing.assert_array_equal(scores, kept)


def test_ignore_eos_runs_the_whole_budget_on_the_second_best_id():
    eos = 3
    scores = np.array([0.0, 1.0, 2.0, 9.0], dtype=np.float32)  # EOS would win every step
    request = GenerationRequest.from_kwargs("x", max_new_tokens=5, ignore_eos=True)
    result = decode_loop(lambda ids: scores, [0], request, lambda ids: "", eos_ids={eos})
    assert result.token_ids == (2,) * 5
    assert result.finish_reason == "length"
    plain = GenerationRequest.from_kwargs("x", max_new_tokens=5)
    stopped = decode_loop(lambda ids: scores, [0], plain, lambda ids: "", eos_ids={eos})
    assert stopped.token_ids == (eos,)
    assert stopped.finish_reason == "eos"


def test_min_new_tokens_holds_eos_and_stop_tokens_back():
    scores = np.array([0.0, 1.0, 2.0, 9.0, 8.0], dtype=np.float32)  # EOS (3) then the stop token (4) would win
    request = GenerationRequest.from_kwargs("x", max_new_tokens=5, min_new_tokens=2, stop_token_ids=4)
    result = decode_loop(lambda ids: scores, [0], request, lambda ids: "", eos_ids={3})
    assert (result.token_ids, result.finish_reason) == ((2, 2, 3), "eos")
    stop_first = np.array([0.0, 1.0, 2.0, 8.0, 9.0], dtype=np.float32)
    result = decode_loop(lambda ids: stop_first, [0], request, lambda ids: "", eos_ids={3})
    assert (result.token_ids, result.finish_reason) == ((2, 2, 4), "stop")
    ignoring = GenerationRequest.from_kwargs("x", max_new_tokens=5, ignore_eos=True, stop_token_ids=[4])
    result = decode_loop(lambda ids: scores, [0], ignoring, lambda ids: "", eos_ids={3})
    assert (result.token_ids, result.finish_reason) == ((4,), "stop")


def test_stop_token_ids_beyond_the_logits_are_refused():
    request = GenerationRequest.from_kwargs("x", max_new_tokens=2, stop_token_ids=[5])
    with pytest.raises(InvalidInputError, match="beyond the model's vocabulary of 5"):
        decode_loop(lambda ids: np.zeros(5, dtype=np.float32), [0], request, lambda ids: "")


def test_repetition_penalty_is_transformers():
    logits = np.array([2.0, -2.0, 1.0, 1.5, -0.5], dtype=np.float32)
    penalty = Penalty([0, 1, 0], 2.0)
    np.testing.assert_array_equal(penalty(logits), [1.0, -4.0, 1.0, 1.5, -0.5])
    penalty.saw(3)
    np.testing.assert_array_equal(penalty(logits), [1.0, -4.0, 1.0, 0.75, -0.5])
    assert logits[0] == 2.0, "the step's logits are not changed"


def test_a_stop_string_is_cut_from_text_and_completion():
    table = np.eye(256, dtype=np.float32)[[ord(c) for c in "bcdefghij"] + [0] * 247]  # a->b->c ... like counting
    request = GenerationRequest.from_kwargs("a", max_new_tokens=8, stop=["ef", "x"])
    decode = lambda ids: bytes(ids).decode()  # noqa: E731
    result = decode_loop(lambda ids: table[ids[0, -1] - ord("a")], [ord("a")], request, decode)
    assert (result.text, result.completion, result.finish_reason) == ("abcd", "bcd", "stop")
    assert bytes(result.token_ids) == b"bcdef"
