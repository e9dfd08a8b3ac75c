"""The model: config, parameter spec, decoder, LoRA, compression, plans, compiled forward."""
