"""SmolLM2-135M-Instruct (real weights): mrr_jax against PyTorch transformers.

Both load the same converted HF directory. Proves the backbone on a real model: last-token
logits of real sentences agree, the exit-30 score is the "Yes" next-token logit, and loading the
GGUF directly gives bit-identical parameters to loading the converted directory.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from mrr_jax import Reranker
from mrr_jax.core.decoder import lm_forward
from mrr_jax.weights.assets import smollm2_gguf_path
from mrr_jax.weights.hf import load_hf_dir

pytestmark = pytest.mark.slow

SENTENCES = [
    "The capital of France is",
    "Photosynthesis converts light energy into chemical energy stored in glucose, which",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Water boils at",
]
YES = 10539


@pytest.fixture(scope="module")
def loaded(smollm2_dir):
    return load_hf_dir(smollm2_dir)


def test_last_token_logits_match_transformers(smollm2_dir, loaded):
    torch.set_num_threads(2)
    tok = transformers.AutoTokenizer.from_pretrained(smollm2_dir)
    tok.padding_side = "right"
    batch = tok(SENTENCES, return_tensors="np", padding=True, add_special_tokens=False)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    model = transformers.LlamaForCausalLM.from_pretrained(
        smollm2_dir, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    last = mask.sum(1) - 1
    ref_last = ref.numpy()[np.arange(len(ids)), last]

    cfg, params = loaded
    logits, _ = jax.jit(lm_forward, static_argnames="cfg")(
        jax.tree.map(jnp.asarray, params), jnp.asarray(ids), jnp.asarray(mask), cfg=cfg)
    got_last = np.asarray(logits)[np.arange(len(ids)), last]
    err = np.abs(got_last - ref_last).max()
    assert err < 2e-4, f"max |logit diff| {err:.2e}"
    # Same greedy next token, and it is a sensible one for the first prompt.
    assert (got_last.argmax(-1) == ref_last.argmax(-1)).all()
    assert tok.decode(int(got_last[0].argmax())).strip() == "Paris"


def test_last_exit_score_is_yes_logit(smollm2_dir, loaded):
    rr = Reranker.from_pretrained(smollm2_dir)
    enc = rr.encode([("What is the capital of France?", "Paris is the capital of France."),
                     ("What is the capital of France?", "Bananas are rich in potassium.")])
    scores = rr.score_encoded(enc, exits=[30])[0]
    cfg, params = loaded
    for e, s in zip(enc, scores):
        ids = jnp.asarray([e.input_ids])
        logits, _ = lm_forward(jax.tree.map(jnp.asarray, params), ids, jnp.ones_like(ids), cfg)
        assert abs(float(logits[0, -1, YES]) - float(s)) < 1e-4


def test_gguf_direct_equals_converted_directory(smollm2_dir, loaded):
    from mrr_jax.core.config import ModelConfig
    from mrr_jax.weights.gguf import read_gguf
    from mrr_jax.weights.hf import assemble_params

    ckpt = read_gguf(smollm2_gguf_path())
    cfg_g = ModelConfig.from_hf(ckpt.hf_config)
    params_g = assemble_params(cfg_g, ckpt.tensors())
    cfg_d, params_d = loaded
    assert cfg_g == cfg_d
    flat_g = jax.tree_util.tree_flatten_with_path(params_g)[0]
    flat_d = dict(jax.tree_util.tree_flatten_with_path(params_d)[0])
    assert len(flat_g) == len(flat_d)
    for path, a in flat_g:
        np.testing.assert_array_equal(a, flat_d[path], err_msg=jax.tree_util.keystr(path))
    # And the Reranker loads the .gguf directly, tokenizer included.
    rr = Reranker.from_pretrained(smollm2_gguf_path())
    assert rr.encode([("q", "p")])[0].query[0] == 1
