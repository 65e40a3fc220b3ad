"""Tiny random Hugging Face models and tokenizers, built offline, for tests and examples."""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("gpt2", "llama")
#: Encoder-decoder architectures ``build_tiny_seq2seq_model`` builds.
SEQ2SEQ_ARCHITECTURES = ("t5", "bart")
#: The special tokens of the seq2seq tokenizer, ids 0.. in this order.
SEQ2SEQ_SPECIALS = ("<pad>", "</s>", "<s>", "<unk>")

_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Hello world! This is a tiny model used in tests, built without any download.",
    "muai runs language models on PyTorch and OpenVINO backends, with fallback.",
    "0 1 2 3 4 5 6 7 8 9 + - * / = ( ) [ ] { } < > ? ! . , ; : ' \"",
    "Ünïcödé tëxt, 中文, русский, emoji 🙂 and tabs\tand new\nlines.",
]


def build_tokenizer(path: str | Path, vocab_size: int = 384, *, seq2seq: bool = False) -> Path:
    """A byte-level BPE tokenizer trained on a few sentences, saved as a transformers tokenizer.

    ``seq2seq`` gives it T5/BART-style specials (``SEQ2SEQ_SPECIALS``: pad 0, eos 1, bos 2, unk 3) and no
    chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SEQ2SEQ_SPECIALS) if seq2seq else ["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    if seq2seq:
        pad, eos, bos, unk = SEQ2SEQ_SPECIALS
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tokenizer, pad_token=pad, eos_token=eos, bos_token=bos, unk_token=unk
        )
        fast.save_pretrained(path)
        return path
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


def build_tiny_seq2seq_model(path: str | Path, architecture: str = "t5", *, seed: int = 0, context: int = 128) -> Path:
    """Save a randomly initialised encoder-decoder LM (T5 or BART, a few hundred kB) with its tokenizer."""
    import torch
    from transformers import (
        AutoTokenizer,
        BartConfig,
        BartForConditionalGeneration,
        T5Config,
        T5ForConditionalGeneration,
    )

    if architecture not in SEQ2SEQ_ARCHITECTURES:
        raise ValueError(f"architecture must be one of {SEQ2SEQ_ARCHITECTURES}, got {architecture!r}")
    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(build_tokenizer(path, seq2seq=True))
    pad, eos, bos = tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id
    torch.manual_seed(seed)
    # Larger random weights than the defaults (which make a tiny model repeat one token or EOS at once), small
    # enough that float32 stays within 1e-4 of float64 (an export is checked against PyTorch at 1e-3).
    if architecture == "t5":  # T5 starts decoding from the pad token
        config = T5Config(
            vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
            pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad, n_positions=context,
            initializer_factor=2.0,
        )  # fmt: skip
        model = T5ForConditionalGeneration(config)
    else:  # BART starts decoding from EOS
        config = BartConfig(
            vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=context,
            pad_token_id=pad, eos_token_id=eos, bos_token_id=bos, decoder_start_token_id=eos,
            forced_eos_token_id=None,
            init_std=0.2,
        )  # fmt: skip
        model = BartForConditionalGeneration(config)
    model.eval().save_pretrained(path, safe_serialization=True)
    return path


#: T5-small's shapes (about 60M parameters), for benchmarks: with random weights the speed holds, the text is noise.
T5_SMALL = {"vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6,
            "num_heads": 8, "n_positions": 512}  # fmt: skip


def build_random_t5_small(path: str | Path, *, seed: int = 0) -> Path:
    """Save a T5 of T5-small's shapes with random weights and the small seq2seq tokenizer (ids beyond the
    tokenizer's vocabulary decode to nothing)."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(build_tokenizer(path, seq2seq=True))
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    torch.manual_seed(seed)
    config = T5Config(**T5_SMALL, pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad)
    T5ForConditionalGeneration(config).eval().save_pretrained(path, safe_serialization=True)
    return path
