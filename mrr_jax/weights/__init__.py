"""Reading and writing weights: HF, GGUF, PEFT, our adapters, packaged assets."""
