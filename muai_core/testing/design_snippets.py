"""The original design's migration guide (docs/design.md), verbatim: its snippets and commands must run as written."""

import contextlib
import io
import textwrap

EXISTING_USERS = """
# This code works exactly as before
from mm_orch.runtime.model_manager import ModelManager

manager = ModelManager(device="cpu")
model = manager.load_model("gpt2", "transformers")
output = manager.generate("gpt2", "Hello world")
"""

PROGRAMMATIC_SELECTION = """
from mm_orch.runtime.model_manager import ModelManager

# Use OpenVINO for all models
manager = ModelManager(
    device="cpu",
    backend="openvino"
)

# Or specify per model
model = manager.load_model(
    "gpt2",
    "transformers",
    backend_override="openvino"
)
"""

CONFIG_FILE = """
# config/system.yaml
backend:
  default: openvino
  openvino:
    device: CPU
    enable_fallback: true

model_overrides:
  gpt2: openvino
  t5-small: pytorch
"""

PERFORMANCE_COMPARISON = """
from mm_orch.runtime.model_manager import ModelManager

# Create managers with different backends
pytorch_manager = ModelManager(backend="pytorch")
openvino_manager = ModelManager(backend="openvino")

# Load same model in both
pytorch_manager.load_model("gpt2", "transformers")
openvino_manager.load_model("gpt2", "transformers")

# Compare performance
pytorch_stats = pytorch_manager.get_performance_stats("gpt2")
openvino_stats = openvino_manager.get_performance_stats("gpt2")

comparison = pytorch_manager.compare_backends(
    "pytorch",
    "openvino"
)
print(f"Speedup: {comparison['throughput_improvement']:.2f}x")
"""

EXPORT_COMMANDS = [
    "python scripts/export_to_openvino.py gpt2 --precision FP32",
    "python scripts/export_to_openvino.py gpt2 --precision FP16",
    "python scripts/export_to_openvino.py --all",
]


def run_snippet(code: str) -> tuple[dict, str]:
    """Run a snippet as a script would; return its globals and what it printed."""
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(textwrap.dedent(code), "<snippet>", "exec"), namespace)
    return namespace, out.getvalue()
