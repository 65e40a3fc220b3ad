"""Compatibility alias of ``muai_core`` under the original design's ``mm_orch.runtime`` path."""
