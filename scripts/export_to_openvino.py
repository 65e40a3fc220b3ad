#!/usr/bin/env python3
"""Export a model to stateful OpenVINO IR: the design's command, the same as ``muai export``.

python scripts/export_to_openvino.py gpt2 --precision FP16
python scripts/export_to_openvino.py --all
"""

import sys

try:
    from muai_openvino.commands import script_main
except ImportError:
    sys.exit("export_to_openvino.py needs muai-openvino: pip install './plugins/muai-openvino[export]'")

if __name__ == "__main__":
    sys.exit(script_main())
