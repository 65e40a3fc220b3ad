"""TextCodec on tokenizer files built here: encoding, chat templates, and the errors of a bad directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from muai_core.contracts import GenerationRequest
from muai_core.errors import InvalidInputError, ModelLoadError
from muai_core.text_codec import TextCodec

VOCAB = {"[UNK]": 0, "<eos>": 1, "hello": 2, "world": 3, "user": 4}
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"


@pytest.fixture
def tokenizer_dir(tmp_path) -> Path:
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    write_config(tmp_path, {"eos_token": "<eos>", "chat_template": TEMPLATE})
    return tmp_path


def write_config(directory: Path, config: object) -> None:
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def chat(codec: TextCodec, text: str = "hello") -> str:
    return codec.prompt_text(GenerationRequest(text, chat=True))


def test_encodes_and_decodes(tokenizer_dir):
    codec = TextCodec(tokenizer_dir, hint="")
    assert codec.encode("hello world") == [2, 3]
    assert codec.decode([2, 3]) == "hello world"


def test_chat_template_from_the_config_sees_the_special_tokens(tokenizer_dir):
    assert chat(TextCodec(tokenizer_dir, hint="")) == "user: hello<eos>"


def test_chat_template_file_comes_before_the_config(tokenizer_dir):
    (tokenizer_dir / "chat_template.jinja").write_text("[{{ messages[0]['content'] }}]", encoding="utf-8")
    assert chat(TextCodec(tokenizer_dir, hint="")) == "[hello]"


def test_named_templates_use_the_default_one(tokenizer_dir):
    named = [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": TEMPLATE}]
    write_config(tokenizer_dir, {"eos_token": "<eos>", "chat_template": named})
    assert chat(TextCodec(tokenizer_dir, hint="")) == "user: hello<eos>"


def test_no_template_refuses_chat_but_not_plain_prompts(tokenizer_dir):
    write_config(tokenizer_dir, {"chat_template": [{"name": "tool_use", "template": "tools"}]})
    codec = TextCodec(tokenizer_dir, hint="")
    assert codec.prompt_text(GenerationRequest("hello")) == "hello"
    with pytest.raises(InvalidInputError, match="no chat template"):
        chat(codec)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "tokenizer_config.json holds a JSON list, not an object"),
        ("{not json", "cannot read .*tokenizer_config.json"),
        ('{"chat_template": 5}', "chat_template in .*tokenizer_config.json is neither a template"),
    ],
)
def test_a_bad_tokenizer_config_is_a_load_error_naming_the_file(tokenizer_dir, content, message):
    (tokenizer_dir / "tokenizer_config.json").write_text(content, encoding="utf-8")
    with pytest.raises(ModelLoadError, match=message) as caught:
        TextCodec(tokenizer_dir, hint="download the model again")
    assert caught.value.hint == "download the model again"


def test_a_missing_tokenizer_is_a_load_error(tokenizer_dir):
    (tokenizer_dir / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="cannot read the tokenizer"):
        TextCodec(tokenizer_dir, hint="")


def test_a_template_that_raises_is_invalid_input(tokenizer_dir):
    write_config(tokenizer_dir, {"chat_template": "{{ raise_exception('only system messages') }}"})
    with pytest.raises(InvalidInputError, match="chat template failed: only system messages"):
        chat(TextCodec(tokenizer_dir, hint=""))
