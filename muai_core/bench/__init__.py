"""``muai bench``: every backend on the same prompt and token budget, each in a process of its own."""
