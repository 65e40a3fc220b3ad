"""A backend's availability from its runtime's imports: "available" means the modules import here."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence

from muai_core.contracts import Availability
from muai_core.errors import first_line


def modules_import(modules: Sequence[str], install: str) -> Availability:
    """Available when every one of ``modules`` imports; else the first that does not, its error and ``install``.

    Each module is imported once per process; later calls reuse the answer.
    """
    for module in modules:
        error = _import_error(module)
        if error is not None:
            return Availability(False, f"{module} does not import ({error}); {install}")
    return Availability(True)


@functools.cache
def _import_error(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # not installed, a missing shared library (OSError), or a broken package's own error
        return f"{type(exc).__name__}: {first_line(exc)}"
    return None
