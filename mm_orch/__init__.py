"""Compatibility alias: the original design's ``mm_orch`` package name, served by ``muai_core``."""
