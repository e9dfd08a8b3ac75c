"""Test setup: 8 host CPU devices (set before jax is imported) and shared fixtures."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture(scope="session")
def reference() -> dict:
    """The authors' golden scores (../shared/fixtures/reference_scores.json)."""
    f = FIXTURES / "reference_scores.json"
    if not f.is_file():
        pytest.fail(f"fixtures not found at {f}; the repo must sit beside shared/")
    return json.loads(f.read_text())


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct converted once to an HF directory (cached)."""
    from mrr_jax.assets import smollm2_dir as get

    return get()
