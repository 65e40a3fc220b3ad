"""Conversations rendered through real models' chat templates, compared with transformers' apply_chat_template."""

from __future__ import annotations

import pytest

from muai_core import chat_template
from muai_core.contracts import GenerationRequest
from muai_core.errors import InvalidInputError
from muai_core.testing.chat_templates import GEMMA_2_TEMPLATE, LLAMA_3_2_TEMPLATE, MIXTRAL_TEMPLATE
from tests.unit.test_text_codec import SMOLLM2_TEMPLATE

transformers = pytest.importorskip("transformers")

TEMPLATES = {"smollm2": SMOLLM2_TEMPLATE, "llama-3.2": LLAMA_3_2_TEMPLATE, "gemma-2": GEMMA_2_TEMPLATE,
             "mixtral": MIXTRAL_TEMPLATE}  # fmt: skip
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
CONVERSATIONS = {
    "one turn": [{"role": "user", "content": "What is the capital of France?"}],
    "multi-turn": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": " Paris. "},
        {"role": "user", "content": "And of Italy? ünï {{ x }} <|eot_id|>"},
    ],
    "with a system turn": [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Capital of France?"},
    ],
    "turns that do not alternate": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}],
    "a tool turn": [{"role": "user", "content": "Weather?"}, {"role": "tool", "content": "sunny"}],
}


def transformers_render(template: str, messages: list[dict[str, str]]) -> str | Exception:
    """What transformers renders (or the error it raises), from a tokenizer built here."""
    from jinja2.exceptions import TemplateError
    from tokenizers import Tokenizer, models

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS.values())}
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), **SPECIAL_TOKENS
    )
    tokenizer.chat_template = template
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError as exc:
        return exc


@pytest.mark.parametrize("messages", CONVERSATIONS.values(), ids=CONVERSATIONS.keys())
@pytest.mark.parametrize("template", TEMPLATES.values(), ids=TEMPLATES.keys())
def test_conversations_render_as_transformers_renders_them(template, messages):
    expected = transformers_render(template, messages)
    request = GenerationRequest.from_kwargs(messages=messages)
    if isinstance(expected, Exception):  # the template's raise_exception: the same message, as InvalidInputError
        with pytest.raises(InvalidInputError) as caught:
            chat_template.prompt_text(request, template, SPECIAL_TOKENS)
        assert caught.value.message == f"the model's chat template failed: {expected}"
        assert "the template refuses these messages" in caught.value.hint
    else:
        assert chat_template.prompt_text(request, template, SPECIAL_TOKENS) == expected


def test_the_date_comes_from_strftime_now():
    import datetime

    request = GenerationRequest.from_kwargs(messages=CONVERSATIONS["one turn"])
    rendered = chat_template.prompt_text(request, LLAMA_3_2_TEMPLATE, SPECIAL_TOKENS)
    assert f"Today Date: {datetime.datetime.now():%d %b %Y}\n" in rendered and "26 Jul 2024" not in rendered
