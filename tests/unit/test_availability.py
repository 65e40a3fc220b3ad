"""A backend is available when its runtime's modules import; a broken install says which and why."""

from __future__ import annotations

from muai_core.availability import modules_import


def test_modules_that_import_are_available():
    assert modules_import(("json", "numpy"), "pip install it").available


def test_a_missing_module_is_named_with_the_install_hint():
    availability = modules_import(("json", "muai_no_such_module"), "pip install muai-thing")
    assert not availability.available
    assert availability.reason.startswith("muai_no_such_module does not import (ModuleNotFoundError: ")
    assert availability.reason.endswith("; pip install muai-thing")


def test_an_installed_module_that_fails_to_import_is_unavailable(muai_broken_import):
    muai_broken_import("muai_broken_runtime", OSError("libruntime.so: cannot open shared object file"))
    availability = modules_import(("muai_broken_runtime",), "pip install muai-thing")
    assert not availability.available
    assert "muai_broken_runtime does not import (OSError: libruntime.so: cannot open shared object file)" in (
        availability.reason
    )


def test_each_module_is_imported_once_per_process(tmp_path, monkeypatch):
    counter = tmp_path / "imports"
    code = f"open({str(counter)!r}, 'a').write('x')\nraise OSError('broken')\n"
    (tmp_path / "muai_counted_runtime.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for _ in range(3):
        assert not modules_import(("muai_counted_runtime",), "pip install muai-thing").available
    assert counter.read_text() == "x"
