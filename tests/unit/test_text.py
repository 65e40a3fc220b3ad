"""TextStream: the streamed pieces add up to the completion, whole characters first."""

from __future__ import annotations

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
