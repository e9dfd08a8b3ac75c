"""Test setup: 8 host CPU devices (set before jax is imported) and the golden fixtures in
``tests/fixtures/`` (the authors' scores; provenance in its README)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def reference() -> dict:
    """The authors' golden scores (tests/fixtures/reference_scores.json)."""
    return json.loads((FIXTURES / "reference_scores.json").read_text())


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct converted once to an HF directory (cached)."""
    from mrr_jax.weights.assets import smollm2_dir as get

    return get()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, smollm2_dir) -> Path:
    """A 6-layer random Llama with SmolLM2's vocabulary and tokenizer, saved as an HF dir."""
    import shutil

    import torch
    import transformers

    out = tmp_path_factory.mktemp("tiny_llama")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    transformers.LlamaForCausalLM(cfg).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(smollm2_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def example_data(tmp_path_factory) -> Path:
    """A small build of the stdlib example dataset (200 passages)."""
    from mrr_jax.data.example import build

    out = tmp_path_factory.mktemp("example")
    build(out, max_docs=200)
    return out


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Drops every compiled program after each test module. One pytest process compiles
    thousands of XLA CPU executables; kept alive together they exhaust the process's memory
    maps (vm.max_map_count) and XLA crashes in a later compile (seen in test_lora after the
    cascade tests were added). Later modules recompile what they need (or read it from the
    persistent compilation cache)."""
    yield
    import jax

    jax.clear_caches()


@pytest.fixture(scope="session")
def tiny_job_args(tiny_model, example_data) -> list[str]:
    """Scoring-job arguments on the tiny model and the example data's dev run: 12 queries x top
    5, chunks of 10 pairs (so a job has several chunks to shard, kill and resume)."""
    d = example_data
    return ["--model", str(tiny_model), "--corpus", str(d / "corpus.jsonl"),
            "--queries", str(d / "queries.jsonl"), "--run", str(d / "bm25" / "dev.trec"),
            "--top-k", "5", "--max-length", "40", "--query-max-length", "8",
            "--batch-size", "10", "--chunk-pairs", "10", "--max-queries", "12",
            "--no-progress"]
