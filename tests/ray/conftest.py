"""A local Ray cluster started by the tests, serving tiny models built offline (``tests/serve``'s store)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray.serve", reason="muai serve --ray needs the ray extra: pip install 'muai-core[ray]'")
pytest.importorskip("openai", reason="the Ray tests talk to the server with the official openai client")

from tests.serve.conftest import LONG_MODEL, MODEL, free_port, store  # noqa: E402, F401  (store: a fixture)

__all__ = ["LONG_MODEL", "MODEL", "free_port", "ray_config", "ray_init_options"]
#: Long enough for an answer that is still being generated when its replica is killed.
MAX_TOKENS = 4000


@pytest.fixture(scope="module")
def ray_config(store, tmp_path_factory) -> str:  # noqa: F811  (the store fixture above)
    """A config serving the store on pytorch, with room for long answers."""
    data = {
        "models_dir": str(store / "models"),
        "backend": {"default": "pytorch", "priority": ["pytorch"]},
        "serve": {"max_tokens": MAX_TOKENS},
    }
    path = Path(tmp_path_factory.mktemp("ray-config")) / "system.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def ray_init_options() -> dict:
    """A small local cluster: two CPUs (one a replica), no dashboard, a small object store."""
    return {"num_cpus": 2, "include_dashboard": False, "object_store_memory": 100 * 2**20, "log_to_driver": False}
