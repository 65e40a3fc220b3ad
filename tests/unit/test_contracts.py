"""GenerationRequest validation: everything out of range is refused with a message naming it."""

from __future__ import annotations

import math

import pytest

from muai_core.contracts import GenerationRequest
from muai_core.errors import InvalidInputError


def test_defaults_are_greedy_with_the_designs_max_length():
    request = GenerationRequest.from_kwargs("hi")
    assert (request.max_length, request.do_sample, request.return_full_text) == (100, False, True)


def test_sampling_arguments_imply_sampling_unless_told_otherwise():
    assert GenerationRequest.from_kwargs("hi", temperature=0.7).do_sample is True
    with pytest.raises(InvalidInputError, match="temperature only apply when sampling"):
        GenerationRequest.from_kwargs("hi", temperature=0.7, do_sample=False)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": b"bytes"}, "prompt must be a str"),
        ({"max_length": 0}, "max_length"),
        ({"max_length": 1.5}, "max_length must be an int"),
        ({"max_new_tokens": -3}, "max_new_tokens"),
        ({"temperature": 0.0, "do_sample": True}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"seed": 2**40}, "seed"),
        ({"do_sample": "yes"}, "do_sample"),
        ({"streamer": 3}, "streamer"),
        ({"beams": 4}, "unknown generation argument(s): beams"),
        ({"stop": ""}, "stop must be a string or a list of non-empty strings"),
        ({"stop": ["ok", ""]}, "stop must be"),
        ({"stop": [3]}, "stop must be"),
        ({"stop": {"a": 1}}, "stop must be"),
        ({"stop_token_ids": -1}, "stop_token_ids must be >= 0"),
        ({"stop_token_ids": [1, 2.5]}, "stop_token_ids must be an int"),
        ({"stop_token_ids": "7"}, "stop_token_ids must be an int or a list of ints"),
        ({"min_new_tokens": -1}, "min_new_tokens must be >= 0"),
        ({"min_new_tokens": 1.5}, "min_new_tokens must be an int"),
        ({"min_new_tokens": 5, "max_new_tokens": 4}, "min_new_tokens=5 is more than max_new_tokens=4"),
        ({"repetition_penalty": 0}, "repetition_penalty must be a finite number > 0"),
        ({"repetition_penalty": -1.2}, "repetition_penalty"),
        ({"repetition_penalty": math.inf}, "repetition_penalty"),
        ({"repetition_penalty": math.nan}, "repetition_penalty"),
        ({"repetition_penalty": True}, "repetition_penalty"),
    ],
)
def test_invalid_arguments_are_named(kwargs, named):
    prompt = kwargs.pop("prompt", "hello")
    with pytest.raises(InvalidInputError) as info:
        GenerationRequest.from_kwargs(prompt, **kwargs)
    assert named in str(info.value)


def test_stop_arguments_take_one_value_or_a_list():
    request = GenerationRequest.from_kwargs("x", stop="\n\n", stop_token_ids=7)
    assert (request.stop, request.stop_token_ids) == (("\n\n",), (7,))
    request = GenerationRequest.from_kwargs("x", stop=["a", "User:"], stop_token_ids=[1, 2], min_new_tokens=3)
    assert (request.stop, request.stop_token_ids, request.min_new_tokens) == (("a", "User:"), (1, 2), 3)
    assert GenerationRequest.from_kwargs("x", repetition_penalty=1).repetition_penalty == 1


def test_stop_token_ids_beyond_the_vocabulary_are_refused():
    request = GenerationRequest.from_kwargs("x", stop_token_ids=[3, 400])
    request.check_token_ids(401)
    with pytest.raises(InvalidInputError, match=r"stop_token_ids \[400\] are beyond the model's vocabulary of 384"):
        request.check_token_ids(384)


def test_budget_from_max_length_and_max_new_tokens():
    assert GenerationRequest.from_kwargs("x", max_length=10).new_token_budget(4) == 6
    assert GenerationRequest.from_kwargs("x", max_length=10, max_new_tokens=20).new_token_budget(4) == 20
    with pytest.raises(InvalidInputError, match="leaves no room after the prompt's 10 tokens"):
        GenerationRequest.from_kwargs("x", max_length=10).new_token_budget(10)


def test_budget_respects_the_context():
    request = GenerationRequest.from_kwargs("x", max_new_tokens=50)
    with pytest.raises(InvalidInputError, match="ask for at most 28 new tokens"):
        request.new_token_budget(100, context_length=128)
    with pytest.raises(InvalidInputError, match="context holds 128"):
        request.new_token_budget(128, context_length=128)


def test_error_messages_shorten_paths_outside_the_project(tmp_path, monkeypatch):
    from muai_core.errors import ModelLoadError

    monkeypatch.chdir(tmp_path)
    error = ModelLoadError(
        f"cannot read {tmp_path / 'models' / 'gpt2' / 'config.json'} nor /home/alice/private/models/llama.",
        hint="see https://huggingface.co/docs/hub and /srv/data/models",
    )
    assert str(error) == (
        "cannot read models/gpt2/config.json nor …/models/llama. see https://huggingface.co/docs/hub and …/data/models"
    )
    assert "alice" not in str(error) and str(tmp_path) not in str(error)
    monkeypatch.setenv("MUAI_FULL_PATHS", "1")
    assert "/home/alice/private/models/llama" in str(ModelLoadError("at /home/alice/private/models/llama"))


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
]


def test_messages_take_the_place_of_the_prompt_and_go_through_the_chat_template():
    messages = [dict(message) for message in CONVERSATION]
    request = GenerationRequest.from_kwargs(messages=messages, max_new_tokens=3)
    messages[1]["content"] = "changed later"  # the request keeps its own copy
    assert (request.prompt, request.chat, request.keeps_prompt) == ("", True, False)
    assert request.conversation == CONVERSATION
    assert GenerationRequest.from_kwargs("Hi", chat=True).conversation == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("prompt", "messages", "named"),
    [
        (None, None, "no prompt"),
        ("Hi", CONVERSATION, "a prompt or messages, not both"),
        (None, "Hi", "messages must be a list of dicts with 'role' and 'content', got str"),
        (None, [], "messages is empty"),
        (None, [CONVERSATION], "message 0 must be a dict with 'role' and 'content', got list"),
        (None, [*CONVERSATION, {"role": "user"}], "message 4 must hold exactly 'role' and 'content' (missing or "
                                                   "unknown: 'content')"),
        (None, [{"role": "user", "content": "a", "name": "x"}], "message 0 must hold exactly 'role' and 'content'"),
        (None, [{"role": "robot", "content": "a"}], "message 0 has role 'robot'"),
        (None, [{"role": "user", "content": 5}], "message 0's content must be a str, got int"),
        (None, [{"role": "user", "content": "\ud800"}], "message 0's content is not valid Unicode text"),
    ],
)  # fmt: skip
def test_bad_messages_are_refused_naming_the_message(prompt, messages, named):
    with pytest.raises(InvalidInputError) as info:
        GenerationRequest.from_kwargs(prompt, messages=messages)
    assert named in str(info.value)


def test_messages_cannot_skip_the_chat_template():
    with pytest.raises(InvalidInputError, match="messages always go through the model's chat template"):
        GenerationRequest.from_kwargs(messages=CONVERSATION, chat=False)
    with pytest.raises(InvalidInputError, match="message 0 has role"):
        GenerationRequest(messages=({"role": "bot", "content": "x"},), chat=True).validate()
    with pytest.raises(InvalidInputError, match="a prompt or messages, not both"):
        GenerationRequest(0, messages=({"role": "user", "content": "x"},), chat=True).validate()
