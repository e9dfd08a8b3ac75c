"""Checkpoint readers and writers (GGUF, Hugging Face)."""
