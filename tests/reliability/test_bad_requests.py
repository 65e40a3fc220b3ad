"""Fuzzed requests on every real backend: each is answered within its budget or refused with InvalidInputError."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from muai_core.errors import InvalidInputError

CONTEXT = 128  # the tiny models' context
PROMPTS = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20),  # lone surrogates too
    st.integers(1, 400).map(lambda n: "word " * n),  # up to well past the context
    st.binary(max_size=20),
    st.sampled_from(["", " ", "\x00", "\ufffd", "\ud800 lone surrogate", "<|endoftext|>", "\n\n"]),
)
NUMBERS = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True), st.none())
REQUESTS = st.fixed_dictionaries(
    {},
    optional={
        "max_length": st.integers(-5, 300),
        "max_new_tokens": st.integers(-5, 10**6) | st.integers(1, 8),
        "do_sample": st.booleans(),
        "temperature": NUMBERS,
        "top_k": NUMBERS,
        "top_p": NUMBERS,
        "seed": NUMBERS,
        "ignore_eos": st.booleans(),
        "chat": st.booleans(),
        "return_full_text": st.booleans() | st.just("yes"),
    },
)


@pytest.mark.parametrize("backend", ["pytorch", "openvino", "numpy"])
@settings(max_examples=100)
@given(prompt=PROMPTS, kwargs=REQUESTS)
def test_any_request_is_answered_or_refused(store, make_manager, backend, prompt, kwargs):
    manager = make_manager(store / "models", store / "openvino", default=backend)
    try:
        result = manager.generate_result("gpt2", prompt, **kwargs)
    except InvalidInputError as exc:
        assert exc.reason and manager.performance_monitor.fallback_events() == []
        event(f"refused: {exc.reason.split(':')[0].split(' got ')[0][:40]}")
        return
    event("answered")
    assert manager.get_model("gpt2").backend_name == backend
    assert 1 <= len(result.token_ids) <= (kwargs.get("max_new_tokens") or CONTEXT)
    assert result.prompt_tokens + len(result.token_ids) <= CONTEXT


@pytest.mark.parametrize("backend", ["pytorch", "openvino", "numpy"])
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.forward("gpt2", {"input_ids": [[1] * 1000]}), "input_ids has 1000 positions"),
        (lambda m: m.generate("gpt2", "Hello", temperature=1e-300), "temperature must be a finite number >= 0.001"),
    ],
    ids=["forward-beyond-context", "tiny-temperature"],
)
def test_the_callers_input_never_triggers_a_fallback(store, make_manager, backend, call, message):
    manager = make_manager(store / "models", store / "openvino", default=backend, fallback=True, then="pytorch")
    with pytest.raises(InvalidInputError, match=message):
        call(manager)
    assert manager.performance_monitor.fallback_events() == []
