"""TextStream: the streamed pieces add up to the completion, whole characters first."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from muai_core.text import TextStream


def _decode(ids):
    return bytes(ids).decode("utf-8", errors="replace")


@given(st.binary(max_size=40))
def test_pieces_add_up_to_the_decoded_text(data):
    pieces: list[str] = []
    stream = TextStream(_decode, pieces.append)
    for byte in data:
        stream.push(byte)
    stream.finish()
    assert "".join(pieces) == _decode(list(data))


def test_an_incomplete_character_is_held_back_until_whole():
    pieces: list[str] = []
    stream = TextStream(_decode, pieces.append)
    euro = "€".encode()
    for byte in b"a" + euro[:2]:
        stream.push(byte)
    assert pieces == ["a"]
    stream.push(euro[2])
    assert pieces == ["a", "€"]


def test_nothing_is_sent_after_the_streamer_asks_to_stop():
    pieces: list[str] = []
    stream = TextStream(_decode, lambda piece: pieces.append(piece) or False)
    stream.push(ord("a"))
    stream.push("€".encode()[0])
    stream.finish()
    assert stream.stopped and pieces == ["a"]


WORDS = ["Hello", " Us", "er", ":", " bye", "\n", "\n\n", "User:", "x"]


def _words(ids):
    return "".join(WORDS[i] for i in ids)


def _stream_words(words, stop):
    """Push ``words`` (from WORDS) one token at a time; return the stream and the text shown after each push."""
    pieces: list[str] = []
    stream = TextStream(_words, pieces.append, stop)
    shown = []
    for word in words:
        stream.push(WORDS.index(word))
        shown.append("".join(pieces))
        if stream.ended:
            break
    return stream, shown, pieces


def test_a_stop_string_split_across_tokens_is_never_shown():
    stream, shown, pieces = _stream_words(["Hello", " Us", "er", ":", " bye"], ["User:"])
    assert shown == ["Hello", "Hello ", "Hello ", "Hello "]  # "Us", "User" could still become "User:"
    assert stream.stopped_by_string and not stream.stopped and stream.cut == len("Hello ")
    stream.finish()
    assert "".join(pieces) == "Hello " and stream.trim("prompt: Hello User:") == "prompt: Hello "


def test_a_prefix_that_does_not_match_is_released():
    stream, shown, pieces = _stream_words(["Hello", " Us", "er", " bye"], ["User:"])
    assert shown == ["Hello", "Hello ", "Hello ", "Hello User bye"] and not stream.ended
    stream.finish()
    assert "".join(pieces) == "Hello User bye" and stream.trim("Hello User bye") == "Hello User bye"


def test_the_earliest_of_several_stop_strings_wins():
    stream, _, pieces = _stream_words(["Hello", "\n\n", "User:"], ["User:", "\n\n"])
    assert stream.cut == len("Hello") and "".join(pieces) == "Hello"
    # both stop strings complete with one token: the one that starts first cuts
    stream, _, pieces = _stream_words(["x", "\n", "User:", "x"], ["x", "User:"])
    assert stream.cut == 0 and pieces == []
    stream, _, pieces = _stream_words(["Hello", " Us", "er", ":"], [": ", "User:", "lo User"])
    assert stream.cut == len("Hel") and "".join(pieces) == "Hel"


def test_stop_strings_are_found_without_a_streamer():
    stream = TextStream(_words, None, ["\n\n"])
    for word in ["Hello", "\n", "\n"]:
        stream.push(WORDS.index(word))
    assert stream.stopped_by_string and stream.cut == len("Hello")


def test_a_stop_string_before_an_incomplete_character_ends_generation():
    pieces: list[str] = []
    stream = TextStream(_decode, pieces.append, ["ab"])
    for byte in b"xab" + "€".encode()[:1]:
        stream.push(byte)
    stream.finish()
    assert stream.stopped_by_string and "".join(pieces) == "x"


def _first_stop(text, stops):
    """What a stream shows of ``text`` pushed one character at a time: up to the first stop string to complete."""
    for end in range(1, len(text) + 1):
        found = [text[:end].find(s) for s in stops if s in text[:end]]
        if found:
            return text[: min(found)]
    return text


@given(st.text(alphabet="ab\n", max_size=30), st.lists(st.text(alphabet="ab\n", min_size=1, max_size=4), max_size=3))
def test_pieces_stop_before_the_first_stop_string_and_never_show_part_of_it(text, stops):
    pieces: list[str] = []
    expected = _first_stop(text, stops)
    stream = TextStream(_decode, pieces.append, stops)
    pushed = ""
    for char in text:
        stream.push(ord(char))
        pushed += char
        assert expected.startswith("".join(pieces))
        if stream.ended:
            break
    stream.finish()
    assert "".join(pieces) == stream.trim(pushed) == expected


def _decode_with_cleanup(ids):
    """Like a Hugging Face tokenizer with clean_up_tokenization_spaces: a space before punctuation is folded."""
    return _decode(ids).replace(" .", ".").replace(" ,", ",")


@given(st.lists(st.sampled_from(list(b"ab .,")), max_size=30))
def test_a_later_token_that_folds_spaces_never_changes_a_sent_piece(data):
    pieces: list[str] = []
    stream = TextStream(_decode_with_cleanup, pieces.append)
    for index, byte in enumerate(data):
        stream.push(byte)
        assert _decode_with_cleanup(data[: index + 1]).startswith("".join(pieces))
    stream.finish()
    assert "".join(pieces) == _decode_with_cleanup(data)


def test_a_cancelled_stream_stops_at_the_next_token_even_when_no_text_goes_out():
    cancel = threading.Event()
    pieces: list[str] = []
    stream = TextStream(lambda ids: " " * len(ids), pieces.append, cancel=cancel)  # whitespace: all held back
    stream.push(1)
    assert not stream.stopped
    cancel.set()
    stream.push(2)
    assert stream.stopped and pieces == []


def test_a_stop_string_is_found_when_a_later_token_folds_a_space_into_it():
    stream = TextStream(_decode_with_cleanup, None, ["Yes."])
    for byte in b"Yes .":
        stream.push(byte)
        if stream.stopped_by_string:
            break
    assert stream.stopped_by_string and stream.trim(_decode_with_cleanup(list(b"Yes ."))) == ""


def test_a_run_of_spaces_streams_as_it_comes_but_for_the_last_one():
    pieces: list[str] = []
    stream = TextStream(lambda ids: "a" + " " * (len(ids) - 1), pieces.append)
    for token in range(5):
        stream.push(token)
    assert "".join(pieces) == "a   ", "a model stuck on spaces still streams (a streamer counting pieces can stop it)"
