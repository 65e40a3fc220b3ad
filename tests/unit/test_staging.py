"""staged_directory and target_lock: swaps that always leave one complete folder, one writer at a time."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from muai_core.errors import ConfigurationError
from muai_core.staging import staged_directory, target_lock

MARKER = "written-by-muai.json"


def write(target: Path, content: str, *, on_wait=None, before_swap=None) -> None:
    with target_lock(target, on_wait=on_wait), staged_directory(target, MARKER) as staging:
        (staging / MARKER).write_text(content)
        (staging / "weights.bin").write_text(content * 3)
        if before_swap is not None:
            before_swap()


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_marked_folder_is_replaced_and_nothing_is_left_beside_it(tmp_path):
    target = tmp_path / "gpt2"
    write(target, "old")
    write(target, "new")
    assert contents(target) == {MARKER: "new", "weights.bin": "newnewnew"}
    assert [p.name for p in tmp_path.iterdir()] == ["gpt2"]


def test_a_failed_rename_of_the_new_folder_keeps_the_old_one_complete(tmp_path, monkeypatch):
    target = tmp_path / "gpt2"
    write(target, "old")
    rename = Path.rename

    def failing(self, destination):
        if ".partial-" in self.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return rename(self, destination)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(ConfigurationError, match="No space left"):
        write(target, "new")
    assert contents(target) == {MARKER: "old", "weights.bin": "oldoldold"}
    assert [p.name for p in tmp_path.iterdir()] == ["gpt2"]


def test_leftovers_of_a_killed_writer_are_tidied_and_a_target_moved_aside_is_put_back(tmp_path):
    target = tmp_path / "gpt2"
    write(target, "old")
    target.rename(tmp_path / ".gpt2.old-0badc0de")  # killed between moving the old folder aside and the new one in
    (tmp_path / ".gpt2.partial-12345678").mkdir()
    (tmp_path / ".gpt2.partial-12345678" / "half.bin").write_text("half")
    with target_lock(target):
        assert contents(target) == {MARKER: "old", "weights.bin": "oldoldold"}
        assert sorted(p.name for p in tmp_path.iterdir()) == [".gpt2.lock", "gpt2"]
    (tmp_path / ".gpt2.partial-87654321").mkdir()  # with the target in place, a stale staging folder just goes
    (tmp_path / ".gpt2.partial").mkdir()  # as older muai named it
    write(target, "new")
    assert [p.name for p in tmp_path.iterdir()] == ["gpt2"]


def test_a_delete_cut_short_is_never_put_back_as_the_target(tmp_path):
    target = tmp_path / "gpt2"
    (tmp_path / ".gpt2.trash-0badc0de").mkdir()  # killed while deleting the old folder after a swap
    (tmp_path / ".gpt2.trash-0badc0de" / "weights.bin").write_text("half gone")
    with target_lock(target):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".gpt2.lock"], "no half-deleted folder becomes gpt2"


def test_the_leftovers_of_another_target_whose_name_starts_alike_are_left_alone(tmp_path):
    write(tmp_path / "gpt2", "old")
    others = [".gpt2.old-foo.partial-12345678", ".gpt2.partial-x"]  # staging of targets "gpt2.old-foo" and such
    for name in others:
        (tmp_path / name).mkdir()
    write(tmp_path / "gpt2", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "gpt2"])


@pytest.mark.parametrize("kind", ["unmarked folder", "file", "link"])
def test_what_muai_did_not_write_is_never_replaced(tmp_path, kind):
    target, elsewhere = tmp_path / "gpt2", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep")
    if kind == "unmarked folder":
        target.mkdir()
        (target / "precious.txt").write_text("keep")
    elif kind == "file":
        target.write_text("keep")
    else:
        (elsewhere / MARKER).write_text("{}")
        target.symlink_to(elsewhere)
    ran = []
    with pytest.raises(ConfigurationError, match="not written by muai"):
        write(target, "new", before_swap=lambda: ran.append(True))
    assert not ran
    assert (target / "precious.txt" if kind != "file" else target).read_text() == "keep"
    assert (elsewhere / "precious.txt").read_text() == "keep"


def test_a_second_writer_waits_for_the_first_and_both_finish_complete(tmp_path):
    target = tmp_path / "gpt2"
    second_waits, first_holds = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            write(target, "first", before_swap=lambda: (first_holds.set(), second_waits.wait(10)))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_holds.wait(10)
    seen: list[dict[str, str]] = []
    write(
        target, "second", on_wait=lambda: (second_waits.set(), None), before_swap=lambda: seen.append(contents(target))
    )
    thread.join(10)
    assert not errors
    assert second_waits.is_set()
    assert seen == [{MARKER: "first", "weights.bin": "firstfirstfirst"}]  # the first writer had finished
    assert contents(target) == {MARKER: "second", "weights.bin": "secondsecondsecond"}
    assert [p.name for p in tmp_path.iterdir()] == ["gpt2"]


def test_a_destination_that_cannot_be_written_is_our_error(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot write in .*/dev/null: not a folder") as info:
        write(Path("/dev/null/gpt2"), "new")
    assert info.value.hint
