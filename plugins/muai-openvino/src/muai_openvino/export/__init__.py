"""The exporter: a Hugging Face causal LM to stateful OpenVINO IR (needs the ``export`` extra)."""
