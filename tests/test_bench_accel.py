"""The benchmark on accelerators, checked on the CPU: where the PyTorch peer runs (jax's device
and dtype), MFU arithmetic and the chip peak table, random checkpoints of real family shapes,
and the report's new columns (no timing is asserted)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mrr_jax.experiments import bench, random_model
from mrr_jax.experiments.bench_report import markdown
from mrr_jax.runtime import chips


# --------------------------------------------------------------------------- peer placement
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("backend,device", [("cpu", "cpu"), ("gpu", "cuda"), ("cuda", "cuda"),
                                            ("rocm", "cuda"), ("tpu", None)])
def test_torch_peer_follows_jax_device_and_dtype(backend, device, dtype):
    peer = chips.torch_peer(backend, dtype)
    assert peer.device == device and peer.dtype == dtype
    assert peer.same_device == (device is not None)
    assert peer.cuda == (device == "cuda")
    if device is None:
        assert "no PyTorch peer" in peer.note


def test_torch_peer_rejects_other_dtypes():
    with pytest.raises(ValueError):
        chips.torch_peer("gpu", "float16")


def test_no_peer_skips_every_torch_case():
    args = bench.parse_args(["--model", ".", "--torch", "eager,sdpa"])
    cases, skipped = bench.torch_cases(args, None, [], chips.torch_peer("tpu", "bfloat16"))
    assert cases == [] and set(skipped) == {"eager", "sdpa"}


# --------------------------------------------------------------------------- peaks and MFU
@pytest.mark.parametrize("kind,peak", [
    ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA H100 NVL", 835),
    ("NVIDIA H200", 989), ("NVIDIA H200 NVL", 835), ("NVIDIA GH200 480GB", 989),
    ("NVIDIA A100-SXM4-80GB", 312), ("NVIDIA A100-SXM4-40GB", 312),
    ("NVIDIA A100 80GB PCIe", 312), ("NVIDIA L4", 121), ("NVIDIA L40S", 362),
    ("TPU v4", 275), ("TPU v5 lite", 197), ("TPU v5e", 197), ("TPU v5", 459),
    ("TPU v5p", 459), ("TPU v6 lite", 918), ("TPU v6e", 918),
])
def test_peak_table(kind, peak):
    assert chips.chip_peak(kind)[0] == peak
    value, source = chips.peak_tflops(kind)
    assert value == peak and "datasheet" in source


@pytest.mark.parametrize("kind", ["cpu", "TPU v4 lite", "NVIDIA GeForce RTX 4090", ""])
def test_unknown_chip_has_no_peak_unless_given(kind):
    assert chips.chip_peak(kind) is None
    assert chips.peak_tflops(kind)[0] is None
    assert chips.peak_tflops(kind, 123.0) == (123.0, "--peak-tflops")
    assert chips.peak_tflops("NVIDIA H100 80GB HBM3", 500.0)[0] == 500.0  # override wins
    with pytest.raises(ValueError):
        chips.peak_tflops(kind, 0.0)


def test_mfu_arithmetic():
    assert chips.achieved_tflops(100.0, 2e12) == pytest.approx(200.0)
    assert chips.mfu(100.0, 2e12, 400.0) == pytest.approx(0.5)
    assert chips.mfu(100.0, 2e12, None) is None
    # 512 pairs/s of a 256-token pair of a 7B model (~2 * 7e9 * 256 FLOPs) on an H100.
    assert chips.mfu(512, 2 * 7e9 * 256, 989) == pytest.approx(512 * 3.584e12 / 1e12 / 989)


def test_peak_flag_is_parsed_and_checked():
    assert bench.parse_args(["--model", ".", "--peak-tflops", "42"]).peak_tflops == 42.0
    with pytest.raises(SystemExit):
        bench.parse_args(["--model", ".", "--peak-tflops", "-1"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--model", ".", "--random-model", "tiny"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--model", ".", "--layers", "2"])


# --------------------------------------------------------------------------- random checkpoints
def _header(path: Path) -> dict:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def _expected_shapes(c: dict) -> dict:
    """HF tensor shapes of one layer, from the family table (not from mrr_jax's spec)."""
    d, h, f = c["hidden_size"], c["head_dim"], c["intermediate_size"]
    n, k = c["num_attention_heads"], c["num_key_value_heads"]
    out = {"self_attn.q_proj.weight": [n * h, d], "self_attn.k_proj.weight": [k * h, d],
           "self_attn.v_proj.weight": [k * h, d], "self_attn.o_proj.weight": [d, n * h],
           "mlp.gate_proj.weight": [f, d], "mlp.up_proj.weight": [f, d],
           "mlp.down_proj.weight": [d, f], "input_layernorm.weight": [d],
           "post_attention_layernorm.weight": [d]}
    if c["model_type"] == "qwen2":
        out |= {"self_attn.q_proj.bias": [n * h], "self_attn.k_proj.bias": [k * h],
                "self_attn.v_proj.bias": [k * h]}
    if c["model_type"] == "gemma2":
        out |= {"pre_feedforward_layernorm.weight": [d], "post_feedforward_layernorm.weight": [d]}
    return out


@pytest.mark.parametrize("name", ["tiny", "tiny-mistral", "tiny-qwen2", "tiny-gemma2"])
def test_random_model_shapes_load_and_score(name, tmp_path):
    from mrr_jax import Reranker

    out = random_model.write_random_model(name, cache_dir=tmp_path)
    assert out == tmp_path / name
    c = json.loads((out / "config.json").read_text())
    fam = random_model.FAMILIES[name][1]
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim",
                "num_key_value_heads", "intermediate_size", "rope_theta", "model_type"):
        assert c[key] == fam[key], key
    assert c["vocab_size"] == max(fam["vocab_size"], 49152)
    assert ("note" in c["mrr_jax_random"]) == (fam["vocab_size"] < 49152)
    hdr = _header(out / "model.safetensors")
    assert {v["dtype"] for k, v in hdr.items() if k != "__metadata__"} == {"BF16"}
    want = {f"model.layers.{i}.{s}": shape for i in range(c["num_hidden_layers"])
            for s, shape in _expected_shapes(c).items()}
    want |= {"model.embed_tokens.weight": [c["vocab_size"], c["hidden_size"]],
             "model.norm.weight": [c["hidden_size"]]}
    if not c["tie_word_embeddings"]:
        want["lm_head.weight"] = [c["vocab_size"], c["hidden_size"]]
    assert {k: v["shape"] for k, v in hdr.items() if k != "__metadata__"} == want
    rr = Reranker.from_pretrained(out, dtype="float32")
    assert rr.cfg.family == c["model_type"]
    scores = np.asarray(rr.compute_score([("what is json?", "JSON is a text format."),
                                          ("a", "b")]))
    assert scores.shape == (2,) and np.isfinite(scores).all() and scores[0] != scores[1]


def test_random_model_is_reused_and_cut(tmp_path):
    a = random_model.write_random_model("tiny", cache_dir=tmp_path, layers=5)
    assert a.name == "tiny-L5"
    assert json.loads((a / "config.json").read_text())["num_hidden_layers"] == 5
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert random_model.write_random_model("tiny", cache_dir=tmp_path, layers=5) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):  # same directory, other content
        random_model.write_random_model("tiny", a, layers=4)
    with pytest.raises(ValueError):
        random_model.family_config("tiny", layers=99)


@pytest.mark.parametrize("name,params_b", [("mistral-7b", 7.24), ("llama3-8b", 8.03),
                                           ("qwen2-7b", 7.62), ("gemma2-9b", 9.24),
                                           ("llama-1b", 1.24)])
def test_large_family_tables_match_public_sizes(name, params_b):
    """Parameter counts of the published checkpoints (family vocabulary, nothing written)."""
    from mrr_jax.core.config import ModelConfig

    cfg = ModelConfig.from_hf(random_model.family_config(name))
    table = random_model.tensor_table(cfg)
    assert sum(math.prod(s) for _, s, _ in table) / 1e9 == pytest.approx(params_b, abs=0.01)
    groups = random_model.shards(table)
    assert [e for g in groups for e in g] == table
    assert all(sum(2 * math.prod(s) for _, s, _ in g) <= random_model.SHARD_BYTES
               for g in groups)


def test_sharded_checkpoint_loads(tmp_path, monkeypatch):
    from mrr_jax import Reranker

    monkeypatch.setattr(random_model, "SHARD_BYTES", 1 << 20)
    out = random_model.write_random_model("tiny-qwen2", tmp_path / "m")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and not (out / "model.safetensors").exists()
    assert Reranker.from_pretrained(out).cfg.attention_bias


# --------------------------------------------------------------------------- the report
def test_bench_random_model_report_has_new_columns(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--random-model", "tiny", "--random-model-dir", str(tmp_path),
                       "--plans", "full;depth=5", "--pairs", "8", "--seq-len", "32",
                       "--batch-size", "4", "--repeats", "1", "--no-compile-check",
                       "--peak-tflops", "1", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    for col in ("| TFLOP/s |", "| MFU % |", "compile s (first call − steady)", "load s",
                "MFU against 1 TFLOP/s (--peak-tflops)"):
        assert col in table, col
    res = json.loads(out.read_text())
    assert res["env"]["torch_device"] == "cpu" and res["env"]["torch_dtype"] == "float32"
    assert res["env"]["random_model"]["name"] == "tiny" and res["jax_load_s"] > 0
    for row in [*res["plans"], *res["torch"].values()]:
        assert row["tflops"] > 0 and row["mfu"] == pytest.approx(row["tflops"] / 1.0)
        assert row["compile_est_s"] >= 0
    for t in res["torch"].values():
        assert t["load_s"] > 0 and t["max_abs_diff"] < 1e-3
    # Without a peak (a CPU), no MFU column.
    res["env"]["peak_tflops"], res["env"]["peak_source"] = None, "no peak known for 'cpu'"
    assert "MFU" not in markdown(res).split("\n\n")[1].splitlines()[0]
