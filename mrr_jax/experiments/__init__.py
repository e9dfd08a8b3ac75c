"""Benchmarks, the demo and the ablation."""
