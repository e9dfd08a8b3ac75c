"""The training levers of docs/method.md §12 (log-odds heads, head learning rate) and the lever
experiment (``python -m mrr_jax.levers``). Plumbing and exact arithmetic on tiny random models;
the measured effect of each lever on SmolLM2 is the README's lever table."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrr_jax.core.backbone import init_heads
from mrr_jax.core.decoder import lm_head_weight
from mrr_jax.inference.adapters import adapter_heads
from mrr_jax.inference.reranker import Reranker
from mrr_jax.runtime.pyconfig import ConfigError, load_config
from mrr_jax.training import loop as train
from mrr_jax.training.step import make_optimizer

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.py")


def _ids(model_dir, *words):
    rr = Reranker.from_pretrained(model_dir, place=False)
    return rr, [rr.tokenizer.encode(w, add_special_tokens=False).ids[0] for w in words]


def test_yes_minus_no_heads_are_the_difference_of_the_lm_head_rows(tiny_model):
    rr, (yes, no) = _ids(tiny_model, "Yes", "No")
    lm = np.asarray(lm_head_weight(rr.params), np.float32)
    ref = init_heads(rr.params, yes, 5)
    assert np.array_equal(ref, np.tile(lm[yes], (5, 1)))  # the reference's heads
    diff = Reranker.from_pretrained(tiny_model, no_token="No", place=False).heads
    assert np.array_equal(np.asarray(diff), np.tile(lm[yes] - lm[no], (diff.shape[0], 1)))
    # the untrained score is logit(Yes) - logit(No) at the scoring token
    pairs = [("what is a list", "A list is a sequence."), ("sort", "sorted() returns a list.")]
    a = Reranker.from_pretrained(tiny_model).compute_score(pairs)
    b = Reranker.from_pretrained(tiny_model, no_token="No").compute_score(pairs)
    assert not np.allclose(a, b)


def test_adapters_carry_their_heads_and_loading_adopts_them(tiny_model, example_data,
                                                            tmp_path, monkeypatch):
    monkeypatch.setenv("MRR_JAX_EXAMPLE_DIR", str(example_data))
    c = load_config(TINY, [f"model.path={str(tiny_model)!r}", "model.no_token='No'",
                           "train.steps=2", "eval.plans=()", "train.progress=False"])
    train.run(c, tmp_path / "run")
    folder = tmp_path / "run" / "adapters" / "stage1"
    meta = json.loads((folder / "adapter_config.json").read_text())
    assert meta["heads"] == {"yes_token": "Yes", "no_token": "No"}
    adopted = Reranker.from_pretrained(tiny_model, adapters=[folder], start_layer=2,
                                       place=False)
    explicit = Reranker.from_pretrained(tiny_model, adapters=[folder], no_token="No", start_layer=2,
                                        place=False)
    assert np.array_equal(np.asarray(adopted.heads), np.asarray(explicit.heads))
    with pytest.raises(ValueError, match="trained on .*'No'.* heads; leave no_token unset"):
        Reranker.from_pretrained(tiny_model, adapters=[folder], no_token="", start_layer=2,
                                 place=False)
    # stage 2 on these adapters must use the same heads
    c2 = load_config(f"{TINY}:vertical", [f"model.path={str(tiny_model)!r}",
                                          f"model.init_adapters=({str(folder)!r},)"])
    with pytest.raises(ConfigError, match="model.init_adapters: .*leave no_token unset"):
        train.load_model(c2)


def test_adapter_heads_reads_metadata_and_refuses_a_mix(tmp_path):
    def adapter(name, heads):
        d = tmp_path / name
        d.mkdir()
        meta = {"format": "mrr_jax.adapter/1", **({"heads": heads} if heads else {})}
        (d / "adapter_config.json").write_text(json.dumps(meta))
        return d

    old = adapter("old", None)  # saved before heads were recorded: the reference's heads
    no = adapter("no", {"yes_token": "Yes", "no_token": "No"})
    assert adapter_heads([]) == "" and adapter_heads([], "No") == "No"
    assert adapter_heads([old]) == "" and adapter_heads([no]) == "No"
    with pytest.raises(ValueError, match="different exit heads"):
        adapter_heads([old, no])
    with pytest.raises(ValueError, match="no_token='No'"):
        adapter_heads([old], "No")


def test_head_lr_scale_multiplies_only_the_heads_updates():
    params = {"stage1": {"heads": {"a": jnp.ones((2, 3)), "b": jnp.ones((2, 1))},
                         "layers": {"q": {"a": jnp.ones((2, 3))}}}}
    grads = jax.tree.map(lambda x: 0.5 * x, params)

    def first_update(scale):
        opt, _ = make_optimizer(1e-2, 10, 0, head_lr_scale=scale)
        updates, _ = opt.update(grads, opt.init(params), params)
        return updates

    plain, scaled = first_update(1.0), first_update(10.0)
    np.testing.assert_allclose(scaled["stage1"]["heads"]["a"], 10 * plain["stage1"]["heads"]["a"])
    np.testing.assert_allclose(scaled["stage1"]["heads"]["b"], 10 * plain["stage1"]["heads"]["b"])
    np.testing.assert_array_equal(scaled["stage1"]["layers"]["q"]["a"],
                                  plain["stage1"]["layers"]["q"]["a"])


@pytest.mark.parametrize("key,value,message", [
    ("model.no_token", "1", "model.no_token=1: expected a str"),
    ("optim.head_lr_scale", "0.0", "optim.head_lr_scale: expected a number > 0"),
])
def test_bad_lever_values_are_refused(key, value, message):
    from mrr_jax.training.config import check_config

    with pytest.raises(ConfigError, match=message):
        check_config(load_config(TINY, [f"{key}={value}"]))


def test_levers_experiment_plumbing(example_data, tmp_path, monkeypatch, capsys):
    """Two levers and the zero-shot rows on the tiny config: every row has both plans, the
    change against base with an interval over the dev queries, and a rerun reuses all."""
    from mrr_jax.experiments import levers

    monkeypatch.setenv("MRR_JAX_EXAMPLE_DIR", str(example_data))
    args = ["--config", TINY, "--steps", "2", "--levers", "base,head-lr-x10",
            "--out", str(tmp_path)]
    assert levers.main(args) == 0
    text = (tmp_path / "levers.md").read_text()
    for row in ("| zero-shot |", "| zero-shot, yes-no heads |", "| base |", "| head-lr-x10 |",
                "| BM25 |"):
        assert row in text
    saved = json.loads((tmp_path / "levers.json").read_text())
    assert [r["plan"] for r in saved["results"]["base"]["rows"]] == ["full", "depth=4", "BM25"]
    assert "[" in text.split("| head-lr-x10 |")[1].split("\n")[0]  # an interval vs base
    cfg = json.loads((tmp_path / "head-lr-x10" / "config.json").read_text())
    assert cfg["optim"]["head_lr_scale"] == 10.0 and cfg["train"]["steps"] == 2
    mtime = (tmp_path / "base" / "dev_grid.json").stat().st_mtime
    assert levers.main(args) == 0
    assert (tmp_path / "base" / "dev_grid.json").stat().st_mtime == mtime
    with pytest.raises(ValueError, match="unknown lever 'nope'"):
        levers.main([*args[:4], "--levers", "nope", "--out", str(tmp_path)])
