"""Compatibility alias of ``muai_core`` under the seed's ``mm_orch.runtime`` path."""
