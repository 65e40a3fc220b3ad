"""muai_core.seq2seq: what every backend running encoder-decoder models shares, with a fake model."""

from __future__ import annotations

import numpy as np
import pytest

from muai_core.contracts import GenerationRequest, LoadRequest
from muai_core.errors import InvalidInputError, ModelLoadError
from muai_core.seq2seq import check_model_type, decode_seq2seq, refuse_encoder_decoder, seq2seq_arrays

VOCAB = 16
START = 0


class FakeModel:
    """A "decoder" whose next token is the last one fed plus one; it records what it was given."""

    def __init__(self) -> None:
        self.encoded: list[list[int]] = []
        self.feeds: list[list[int]] = []

    def step_for(self, prompt_ids: list[int]):
        self.encoded.append(prompt_ids)

        def step(ids: np.ndarray) -> np.ndarray:
            self.feeds.append(ids[0].tolist())
            logits = np.zeros(VOCAB, dtype=np.float32)
            logits[(int(ids[0, -1]) + 1) % VOCAB] = 10.0
            return logits

        return step


def run(model: FakeModel, prompt_ids=(5, 6, 7), context=None, **kwargs):
    decode = lambda ids: "".join(chr(ord("a") + i) for i in ids)  # noqa: E731
    request = GenerationRequest("prompt", **kwargs)
    return decode_seq2seq(model.step_for, list(prompt_ids), START, request, decode, context_length=context)


def test_the_prompt_is_encoded_once_and_the_decoder_starts_from_its_start_token():
    model = FakeModel()
    result = run(model, max_new_tokens=3)
    assert model.encoded == [[5, 6, 7]] and model.feeds == [[START], [1], [2]]
    assert result.token_ids == (1, 2, 3) and result.prompt_tokens == 3


def test_max_length_counts_the_output_with_the_start_token_and_not_the_prompt():
    assert len(run(FakeModel(), prompt_ids=range(1, 10), max_length=5).token_ids) == 4
    with pytest.raises(InvalidInputError, match="decoder start token"):
        run(FakeModel(), max_length=1)


def test_return_full_text_keeps_no_prompt():
    result = run(FakeModel(), max_new_tokens=2, return_full_text=True)
    assert result.text == result.completion == "bc"


def test_a_resumed_generation_feeds_the_tokens_already_produced_after_the_start_token():
    model = FakeModel()
    result = run(model, max_new_tokens=4, resume_ids=(1, 2))
    assert model.feeds[0] == [START, 1, 2] and result.token_ids == (1, 2, 3, 4)


def test_an_empty_or_too_long_prompt_is_refused():
    with pytest.raises(InvalidInputError, match="no tokens"):
        run(FakeModel(), prompt_ids=())
    with pytest.raises(InvalidInputError, match="context holds 2"):
        run(FakeModel(), prompt_ids=(1, 2, 3), context=2, max_new_tokens=1)


def test_forward_inputs_need_decoder_input_ids_of_as_many_rows():
    with pytest.raises(InvalidInputError, match="decoder_input_ids"):
        seq2seq_arrays({"input_ids": [[1, 2]]}, VOCAB)
    with pytest.raises(InvalidInputError, match="decoder_input_ids has 2 rows"):
        seq2seq_arrays({"input_ids": [[1, 2]], "decoder_input_ids": [[0], [0]]}, VOCAB)
    with pytest.raises(InvalidInputError, match="decoder_input_ids must lie in"):
        seq2seq_arrays({"input_ids": [[1, 2]], "decoder_input_ids": [[VOCAB]]}, VOCAB)
    ids, mask, decoder = seq2seq_arrays({"input_ids": [[1, 2]], "decoder_input_ids": [[0, 3, 4]]}, VOCAB)
    assert ids.shape == mask.shape == (1, 2) and decoder.tolist() == [[0, 3, 4]]


def test_backends_without_seq2seq_hand_the_model_on():
    refuse_encoder_decoder({"model_type": "gpt2"}, "m", "numpy")
    with pytest.raises(ModelLoadError, match="encoder-decoder \\(t5\\)"):
        refuse_encoder_decoder({"model_type": "t5", "is_encoder_decoder": True}, "m", "numpy")
    request = LoadRequest("m", "seq2seq", "models/m", True, "cpu")
    with pytest.raises(ModelLoadError, match="model_type 'seq2seq'"):  # a load failure: the next backend tries
        request.require_model_type(("transformers",), "numpy")
    with pytest.raises(InvalidInputError):  # an unknown type is the caller's error, as before
        LoadRequest("m", "vision", "models/m", True, "cpu").require_model_type(("transformers",), "numpy")


def test_the_seq2seq_model_type_needs_an_encoder_decoder_model():
    check_model_type("seq2seq", True, "m")
    check_model_type("transformers", False, "m")
    with pytest.raises(ModelLoadError, match="is_encoder_decoder"):
        check_model_type("seq2seq", False, "m")
