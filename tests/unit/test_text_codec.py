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


def test_takes_the_directory_as_a_str_too(tokenizer_dir):
    codec = TextCodec(str(tokenizer_dir), hint="")
    assert codec.encode("hello world") == [2, 3] and chat(codec) == "user: hello<eos>"


def test_messages_render_every_turn_through_the_template(tokenizer_dir):
    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}]
    request = GenerationRequest.from_kwargs(messages=messages)
    assert TextCodec(tokenizer_dir, hint="").prompt_text(request) == "user: hello<eos>assistant: world<eos>"


def test_chat_template_from_the_config_sees_the_special_tokens(tokenizer_dir):
    assert chat(TextCodec(tokenizer_dir, hint="")) == "user: hello<eos>"


def test_chat_template_file_comes_before_the_config(tokenizer_dir):
    (tokenizer_dir / "chat_template.jinja").write_text("[{{ messages[0]['content'] }}]", encoding="utf-8")
    assert chat(TextCodec(tokenizer_dir, hint="")) == "[hello]"


def test_named_templates_use_the_default_one(tokenizer_dir):
    named = [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": TEMPLATE}]
    write_config(tokenizer_dir, {"eos_token": "<eos>", "chat_template": named})
    assert chat(TextCodec(tokenizer_dir, hint="")) == "user: hello<eos>"


def test_no_template_refuses_chat_and_messages_but_not_plain_prompts(tokenizer_dir):
    write_config(tokenizer_dir, {"chat_template": [{"name": "tool_use", "template": "tools"}]})
    codec = TextCodec(tokenizer_dir, hint="")
    assert codec.prompt_text(GenerationRequest("hello")) == "hello"
    with pytest.raises(InvalidInputError, match="no chat template"):
        chat(codec)
    with pytest.raises(InvalidInputError, match="no chat template") as caught:
        codec.prompt_text(GenerationRequest.from_kwargs(messages=[{"role": "user", "content": "hello"}]))
    assert "pass the text as a prompt instead of messages" in caught.value.hint


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


SMOLLM2_TEMPLATE = (  # SmolLM2-135M-Instruct's chat template, as its GGUF and tokenizer_config.json hold it
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FEATURES_TEMPLATE = (  # what real templates use: namespaces, tools, tojson, strftime_now, set blocks, % and format
    "{{ bos_token }}{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}"
    "{% if tools is not none %}tools{% endif %}{{ ns.n }} {{ messages | tojson }}{% set b %}{{ eos_token * 2 }}"
    "{% endset %}{{ b | upper }} {{ '%05d' % 3 }} {{ '{:>4}'.format(7) }} {{ strftime_now('%Y') | length }}"
    "{% for m in messages if m.role == 'user' %}{{ loop.index }}{{ m.content | trim }}{% endfor %}"
)


@pytest.mark.parametrize("template", [SMOLLM2_TEMPLATE, FEATURES_TEMPLATE, TEMPLATE])
@pytest.mark.parametrize("prompt", ["What is the capital of France?", " ünï <|im_end|>{{ x }} 'q' \"d\" "])
def test_templates_render_as_transformers_renders_them(tokenizer_dir, template, prompt):
    AutoTokenizer = pytest.importorskip("transformers").AutoTokenizer  # the core session has no transformers

    write_config(tokenizer_dir, {"eos_token": "<eos>", "bos_token": "user", "chat_template": template})
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    expected = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)  # fmt: skip
    assert chat(TextCodec(tokenizer_dir, hint=""), prompt) == expected


HOSTILE_TEMPLATES = {
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "endless recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "recursive loop": "{% for x in [1] recursive %}{{ loop(range(100000)) if x < 2 }}{% endfor %}",
    "doubling string": "{% set n = namespace(s='ab') %}{% for i in range(60) %}{% set n.s = n.s ~ n.s %}{% endfor %}",
    "doubling filter": "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s|replace('a','aa') %}"
    "{% endfor %}",
    "squaring number": "{% set n = namespace(x=10) %}{% for i in range(100) %}{% set n.x = n.x * n.x %}{% endfor %}",
    "huge repeat": "{{ 'a' * 10000000000 }}",
    "huge list": "{% for x in [1] * 100000000 %}{% endfor %}",
    "huge power": "{{ 10 ** 1000000000 }}",
    "huge width filter": "{{ 'a' | center(10000000000) }}",
    "huge width method": "{{ 'a'.ljust(10000000000) }}",
    "huge % width": "{{ '%10000000000d' % 1 }}",
    "huge format width": "{{ '{:>10000000000}'.format(1) }}",
    "long output": "{% for i in range(100000) %}{{ messages[0].content * 100 }}{% endfor %}",
}


@pytest.mark.parametrize("template", HOSTILE_TEMPLATES.values(), ids=HOSTILE_TEMPLATES.keys())
def test_a_template_that_would_hang_or_exhaust_memory_is_refused_quickly(tokenizer_dir, template):
    import time

    (tokenizer_dir / "chat_template.jinja").write_text(template, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(InvalidInputError, match="chat template is too expensive to render") as caught:
        chat(TextCodec(tokenizer_dir, hint=""))
    assert time.monotonic() - started < 5
    assert "generate without chat" in caught.value.hint


MEMORY_HUNGRY_TEMPLATES = {
    "concatenation": "{% set s = 'x' * 1000000 %}{{ (s~s~s~s~s~s~s~s~s~s~s~s~s~s~s~s~s~s~s~s)|length }}",
    "replace method": "{% set s = 'x' * 20000 %}{{ s.replace('', s)|length }}",
    "expandtabs": "{% set s = '\t' * 300 %}{{ s.expandtabs(1000000)|length }}",
    "indent filter": "{% set s = '\n' * 2000 %}{{ s|indent(999999)|length }}",
    "replace filter": "{% set s = 'x' * 20000 %}{{ s|replace('', s)|length }}",
    "join method": "{% set s = 'x' * 100000 %}{{ s.join(range(1000)|map('string'))|length }}",
    "join filter": "{% set s = 'x' * 100000 %}{{ range(1000)|join(s)|length }}",
    "repeated format field": "{% set s = 'x' * 900000 %}{{ ('{0}' * 100).format(s)|length }}",
    "repeated % field": "{% set s = 'x' * 900000 %}{{ (('%s' * 100) % ((s,) * 100))|length }}",
    "list printed": "{% set s = 'x' * 1000000 %}{{ [" + ", ".join(["s"] * 60) + "] }}",
}


@pytest.mark.parametrize("template", MEMORY_HUNGRY_TEMPLATES.values(), ids=MEMORY_HUNGRY_TEMPLATES.keys())
def test_a_template_is_refused_before_it_builds_a_huge_value(tokenizer_dir, template):
    import tracemalloc

    (tokenizer_dir / "chat_template.jinja").write_text(template, encoding="utf-8")
    codec = TextCodec(tokenizer_dir, hint="")
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match="chat template is too expensive to render"):
            chat(codec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"the rendering allocated {peak // 2**20} MB before it was refused"


def test_a_template_that_is_not_jinja_is_invalid_input_naming_the_template(tokenizer_dir):
    (tokenizer_dir / "chat_template.jinja").write_text("{% for %}", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="chat template is not a valid Jinja template"):
        chat(TextCodec(tokenizer_dir, hint=""))
