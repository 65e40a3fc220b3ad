"""Error messages: the text as raised is kept, and paths are shortened only when the message is shown."""

from __future__ import annotations

import os

import pytest

from muai_core.errors import ConfigurationError, ModelLoadError, short_repr


def test_an_error_raised_after_the_working_directory_was_removed_keeps_its_message(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    os.rmdir(gone)
    error = ModelLoadError("cannot read /srv/data/models/gpt2/config.json", hint="export it again")
    assert str(error) == "cannot read …/gpt2/config.json. export it again"
    assert error.message == "cannot read /srv/data/models/gpt2/config.json"


@pytest.mark.parametrize(
    ("path", "shown"), [("/etc", "/etc"), ("/etc/passwd", "/etc/passwd"), ("/a/b/c.", "…/b/c."), ("/", "/")]
)
def test_short_absolute_paths_are_shown_as_they_are(path, shown, monkeypatch):
    monkeypatch.delenv("MUAI_FULL_PATHS", raising=False)
    assert ModelLoadError(f"no model at {path}").reason == f"no model at {shown}"


def test_paths_are_shortened_where_the_message_is_shown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    error = ModelLoadError(f"no model at {tmp_path / 'models' / 'x'}")
    assert error.reason == "no model at models/x"
    monkeypatch.setenv("MUAI_FULL_PATHS", "1")
    assert error.reason == f"no model at {tmp_path / 'models' / 'x'}"


def test_short_repr_is_bounded_for_any_value():
    assert len(short_repr("x" * 10**7)) <= 60
    assert short_repr(10**4999) == "<a number of about 5000 digits>"
    assert short_repr({"k": [1, 2]}) == "{'k': [1, 2]}"


def test_out_of_range_top_p_has_a_hint():
    from muai_core.contracts import GenerationRequest
    from muai_core.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as info:
        GenerationRequest.from_kwargs("x", do_sample=True, top_p=2.0)
    assert info.value.hint and "top_p=0.9" in info.value.hint


def test_unknown_openvino_precision_has_a_hint():
    settings = pytest.importorskip("muai_openvino.settings")
    with pytest.raises(ConfigurationError, match="backend.openvino.precision must be one of") as info:
        settings.parse_settings("CPU", {"precision": "FP64"})
    assert info.value.hint and "INT8" in info.value.hint
