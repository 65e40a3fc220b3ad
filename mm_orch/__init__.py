"""Compatibility alias: the seed's ``mm_orch`` package name, served by ``muai_core``."""
