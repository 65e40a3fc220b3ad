"""Where muai looks for its config and models: the project around the working directory, then the user's home.

A *project* is the nearest folder, from the working directory upwards, that holds ``config/system.yaml`` or a
``models/`` folder. Relative paths (``models_dir``, the default config file) are taken from it, so muai works
from any subfolder of a project. Outside any project, models live in the user's muai home
(``$MUAI_HOME``, else ``$XDG_DATA_HOME/muai``, else ``~/.local/share/muai``), under ``models/``.
"""

from __future__ import annotations

import os
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
    for folder in (here, *here.parents):
        if (folder / PROJECT_CONFIG).is_file() or (folder / PROJECT_MODELS).is_dir():
            return folder
    return None


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
