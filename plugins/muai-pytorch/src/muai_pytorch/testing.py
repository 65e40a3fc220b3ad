"""Tiny random Hugging Face models and tokenizers, built offline, for tests and examples."""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("gpt2", "llama")

_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Hello world! This is a tiny model used in tests, built without any download.",
    "muai runs language models on PyTorch and OpenVINO backends, with fallback.",
    "0 1 2 3 4 5 6 7 8 9 + - * / = ( ) [ ] { } < > ? ! . , ; : ' \"",
    "Ünïcödé tëxt, 中文, русский, emoji 🙂 and tabs\tand new\nlines.",
]


def build_tokenizer(path: str | Path, vocab_size: int = 384) -> Path:
    """A byte-level BPE tokenizer trained on a few sentences, saved as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    fast.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    fast.save_pretrained(path)
    return path


def build_tiny_model(path: str | Path, architecture: str = "gpt2", *, seed: int = 0, context: int = 128) -> Path:
    """Save a randomly initialised causal LM (a few hundred kB) with its tokenizer to ``path``."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(build_tokenizer(path))
    eos = tokenizer.eos_token_id
    common = {"vocab_size": len(tokenizer), "bos_token_id": eos, "eos_token_id": eos}
    torch.manual_seed(seed)
    if architecture == "gpt2":
        config = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=context, **common)
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=context,
            tie_word_embeddings=False,
            **common,
        )
        model = LlamaForCausalLM(config)
    model.eval().save_pretrained(path, safe_serialization=True)
    return path
