"""A muai backend skeleton (see README.md)."""
