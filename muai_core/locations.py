"""Where muai looks for its config and models: the project around the working directory, then the user's home.

A *project* is the nearest folder, from the working directory upwards, that holds ``config/system.yaml`` or a
``models/`` folder, owned by the user muai runs as. The walk stops at the user's home folder (a folder above
it, or ``/``, is never a project), and a marker someone else owns (``/tmp/models`` made by another user) does
not count. Relative paths (``models_dir``, the default config file) are taken from it, so muai works
from any subfolder of a project. Outside any project, models live in the user's muai home
(``$MUAI_HOME``, else ``$XDG_DATA_HOME/muai``, else ``~/.local/share/muai``), under ``models/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

HOME_ENV = "MUAI_HOME"
PROJECT_CONFIG = Path("config") / "system.yaml"
PROJECT_MODELS = "models"


def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder from ``start`` (default: the working directory) upwards that is a muai project."""
    try:
        here = (start or Path.cwd()).absolute()
    except OSError:  # the working directory was removed
        return None
    home = Path.home().absolute()
    for folder in (here, *here.parents):
        if folder == folder.parent:  # the filesystem's root is nobody's project
            return None
        if _owned_marker(folder / PROJECT_CONFIG, Path.is_file) or _owned_marker(folder / PROJECT_MODELS, Path.is_dir):
            return folder
        if folder == home:
            return None
    return None


def _owned_marker(path: Path, kind: Callable[[Path], bool]) -> bool:
    """``path`` exists as ``kind`` and belongs to the user muai runs as (another user's could redirect it)."""
    try:
        return kind(path) and path.stat().st_uid == os.getuid()
    except OSError:
        return False


def base_dir() -> Path:
    """What relative paths in the config are relative to: the project root, else the working directory.

    ``.`` when that is the working directory itself, so paths in messages stay short.
    """
    root = project_root()
    return root if root is not None and root != Path.cwd().absolute() else Path(".")


def user_home() -> Path:
    """The user's muai home: ``$MUAI_HOME``, ``$XDG_DATA_HOME/muai`` or ``~/.local/share/muai``."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(data) / "muai"


def user_models_dir() -> Path:
    return user_home() / PROJECT_MODELS


def resolve(path: str | os.PathLike[str]) -> Path:
    """``path`` as given when absolute (``~`` expanded), else under the project root or working directory."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base_dir() / candidate
