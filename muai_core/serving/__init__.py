"""``muai serve``: an OpenAI-compatible HTTP server over a ``ModelManager`` (the ``serve`` extra).

``create_app(manager_or_config, ...)`` builds the ASGI app; ``muai_core.serving.settings`` and this module
import without the extra, the app itself needs ``pip install 'muai-core[serve]'``.
"""

from __future__ import annotations

from typing import Any

from muai_core.errors import ConfigurationError

#: What ``muai serve`` needs beyond the core.
EXTRA_MODULES = ("fastapi", "uvicorn", "prometheus_client")
INSTALL_HINT = "pip install 'muai-core[serve]'"


def require_extra() -> None:
    """Raise ``ConfigurationError`` with the install command when a module of the ``serve`` extra is missing."""
    import importlib

    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(
                f"muai serve needs {name}, which is not installed ({exc})", hint=INSTALL_HINT
            ) from None


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The server's ASGI app; see ``muai_core.serving.app.create_app``."""
    require_extra()
    from muai_core.serving.app import create_app as create

    return create(*args, **kwargs)
