"""An example muai backend: Hugging Face llama and GPT-2 checkpoints run with NumPy."""
