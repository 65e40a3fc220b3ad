"""Docs stay honest: every hook is documented in docs/writing-a-backend.md and has a test of its own."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from muai_core import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name, f in vars(hookspecs).items() if name.startswith("muai_") and inspect.isfunction(f))


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_arguments(hook):
    arguments = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    doc = (ROOT / "docs" / "writing-a-backend.md").read_text(encoding="utf-8")
    assert f"### {hook}({arguments})" in doc


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test_of_its_own(hook):
    tests = (ROOT / "tests" / "unit" / "test_hooks.py").read_text(encoding="utf-8")
    assert re.search(rf"^def test_hook_{hook}\b", tests, re.MULTILINE)


def test_no_documented_hook_is_missing_from_hookspecs():
    doc = (ROOT / "docs" / "writing-a-backend.md").read_text(encoding="utf-8")
    assert sorted(re.findall(r"^### (muai_\w+)\(", doc, re.MULTILINE)) == HOOKS


def test_every_property_tag_resolves_to_the_design():
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^### Property (\d+): (.+)$", design, re.MULTILINE))
    assert sorted(map(int, documented)) == list(range(1, 14))
    tags = [
        (path.relative_to(ROOT), number, title.strip())
        for folder in ("tests", "plugins", "examples")
        for path in (ROOT / folder).glob("**/test_*.py")
        for number, title in re.findall(
            r"# Feature: openvino-backend-integration, Property (\d+): ([^(\n]+)", path.read_text(encoding="utf-8")
        )
    ]
    assert len(tags) >= 13
    wrong = [tag for tag in tags if documented.get(tag[1]) != tag[2]]
    assert not wrong, f"tags whose number and title are not a property of docs/design.md: {wrong}"
