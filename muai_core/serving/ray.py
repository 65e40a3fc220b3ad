"""``muai serve --ray``: the server as a Ray Serve deployment of N replicas (the ``ray`` extra).

Each replica builds its own ``ModelManager`` from the same config and serves ``create_app``'s routes; Ray Serve's
HTTP proxy hands requests to a light gateway that passes each to a replica, and to another one when that replica
dies before answering. Ray checks each replica's health (``check_usable``) and replaces a dead one::

    from ray import serve
    from muai_core.serving.ray import deployment

    serve.run(deployment("/etc/muai/system.yaml", replicas=2))

or, with Ray's own CLI: ``serve run muai_core.serving.ray:build config=/etc/muai/system.yaml replicas=2``.
This module imports without Ray; its functions need ``pip install 'muai-core[ray]'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from muai_core.config import config_path, load_config
from muai_core.errors import BackendError, ConfigurationError, short_repr
from muai_core.serving import require_extra
from muai_core.serving.settings import API_KEY_ENV, ServeSettings

if TYPE_CHECKING:
    from muai_core.manager import ModelManager

INSTALL_HINT = "pip install 'muai-core[ray]'"
#: The Ray Serve application ``muai serve --ray`` runs.
APP_NAME = "muai"
#: Requests one replica takes at once (they share its continuous batch); more wait in Ray's proxy.
MAX_ONGOING_REQUESTS = 32


def require_ray() -> None:
    """Raise ``ConfigurationError`` with the install command unless the server and Ray Serve can be imported."""
    require_extra()
    try:
        import ray.serve  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"muai serve --ray needs Ray Serve, which is not installed ({exc})", hint=INSTALL_HINT
        ) from None


def deployment(
    config: str | os.PathLike[str] | None = None,
    *,
    replicas: int = 1,
    api_key: str | None = None,
    preload: Sequence[str] = (),
    num_cpus: float = 1,
    max_ongoing_requests: int = MAX_ONGOING_REQUESTS,
) -> Any:
    """The server as a Ray Serve application (pass it to ``serve.run``): ``replicas`` copies, each with its own
    ``ModelManager`` made from ``config`` (None: ``$MUAI_CONFIG`` or the default config) and ``num_cpus`` CPUs.

    The config is named by its absolute path: on a multi-node cluster it (and the models) must be there on every
    node. ``api_key`` (else ``$MUAI_API_KEY`` here) is handed to the replicas; ``preload`` models load as each
    replica starts.
    """
    require_ray()
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ConfigurationError(f"replicas must be an int >= 1, got {short_repr(replicas)}", hint="e.g. replicas=2")
    from muai_core.serving.ray_gateway import MuaiGateway
    from muai_core.serving.ray_replica import MuaiReplica

    path = str(config_path(config).resolve())
    settings = ServeSettings.from_section(load_config(path).serve)  # a bad config fails here, not on each replica
    key = api_key or os.environ.get(API_KEY_ENV) or None
    options = MuaiReplica.options(
        num_replicas=replicas, ray_actor_options={"num_cpus": num_cpus}, max_ongoing_requests=max_ongoing_requests
    )
    return MuaiGateway.bind(options.bind(path, key, tuple(preload)), settings.max_request_bytes)


def build(args: Mapping[str, str]) -> Any:
    """The application for ``serve run muai_core.serving.ray:build config=PATH replicas=N models=a,b``."""
    replicas = args.get("replicas", "1")
    if not str(replicas).isdigit():
        raise ConfigurationError(f"replicas must be an int >= 1, got {short_repr(replicas)}", hint="e.g. replicas=2")
    models = [name.strip() for name in args.get("models", "").split(",") if name.strip()]
    return deployment(args.get("config"), replicas=int(replicas), preload=models)


def check_usable(manager: ModelManager) -> None:
    """Raise ``BackendError`` unless a backend of the manager's chain can run here (Ray then replaces the replica)."""
    chain = dict.fromkeys((manager.backend_type, *manager.config.priority))
    available = set(manager.get_available_backends())
    if not available.intersection(chain):
        raise BackendError(
            f"no backend of the chain {' -> '.join(chain)} is available on this replica",
            hint="install the backends' plugins on every node of the Ray cluster",
        )
