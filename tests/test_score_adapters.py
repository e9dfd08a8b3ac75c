"""``python -m mrr_jax.score --adapters DIR ...``: the job scores with the adapters, per plan by
role (stage-1 on every plan, H(2) only on plans compressing with ratio 2), exactly as
``Reranker.from_pretrained(model, adapters=[...]).compute_score``; the adapters are part of the
job's configuration hash, so ``--resume`` with other adapters is refused.

Small: 3 queries x top 3 on the tiny random Llama, lengths cut short."""

import json

import jax
import numpy as np
import pytest

from mrr_jax import Reranker
from mrr_jax.core.lora import LoraConfig, init_lora
from mrr_jax.data import beir, trec
from mrr_jax.scoring_job import job as score
from mrr_jax.weights.adapters import AdapterRole, save_adapter

PLANS = ["full", "depth=5 compress=4:2"]
LENGTHS = dict(max_length=40, query_max_length=8)


def _random_adapter(rr, seed: int) -> dict:
    lcfg = LoraConfig(rank=4, alpha=8.0, dropout=0.0)
    tree = init_lora(jax.random.key(seed), rr.params, rr.heads, lcfg)
    rng = np.random.default_rng(seed)
    tree = jax.tree_util.tree_map_with_path(
        lambda path, x: (0.5 * rng.standard_normal(x.shape)).astype(np.float32)
        if path[-1].key == "b" else np.asarray(x), tree)
    return tree, lcfg


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model):
    """(stage-1 adapter folder, horizontal ratio-2 adapter folder), random and non-zero."""
    rr = Reranker.from_pretrained(tiny_model)
    root = tmp_path_factory.mktemp("adapters")
    s1, lcfg = _random_adapter(rr, 1)
    h2, _ = _random_adapter(rr, 2)
    return (save_adapter(root / "stage1", s1, lcfg, rr.cfg, rr.start_layer,
                         role=AdapterRole("stage1")),
            save_adapter(root / "h2", h2, lcfg, rr.cfg, rr.start_layer,
                         role=AdapterRole.parse("h2")))


@pytest.fixture(scope="module")
def job_args(tiny_model, example_data):
    d = example_data
    args = ["--model", str(tiny_model), "--corpus", str(d / "corpus.jsonl"),
            "--queries", str(d / "queries.jsonl"), "--run", str(d / "bm25" / "dev.trec"),
            "--top-k", "3", "--max-queries", "3", "--max-length", "40",
            "--query-max-length", "8", "--batch-size", "8", "--chunk-pairs", "6",
            "--no-progress"]
    for p in PLANS:
        args += ["--plan", p]
    return args


def _runs(out):
    """{plan as given: run} of a finished job."""
    summary = json.loads((out / "summary.json").read_text())
    return {p["plan_arg"]: trec.load_run(out / p["files"][-1]) for p in summary["plans"]}


def _pairs(run, example_data):
    queries = beir.load_queries(example_data / "queries.jsonl")
    corpus = beir.load_corpus(example_data / "corpus.jsonl")
    keys = [(q, d) for q in sorted(run) for d in sorted(run[q])]
    return keys, [(queries[q], corpus[d].passage) for q, d in keys]


@pytest.mark.filterwarnings("ignore:.*truncated to max_length")
def test_job_scores_with_adapters_per_plan(tmp_path, job_args, adapters, tiny_model,
                                           example_data, capsys):
    s1, h2 = adapters
    base_out, ad_out = tmp_path / "base", tmp_path / "adapted"
    assert score.main([*job_args, "--out", str(base_out)]) == 0
    assert score.main([*job_args, "--adapters", str(s1), "--adapters", str(h2),
                       "--out", str(ad_out)]) == 0
    base, adapted = _runs(base_out), _runs(ad_out)

    keys, pairs = _pairs(adapted["full"], example_data)
    assert len(keys) == 9
    with_s1 = Reranker.from_pretrained(tiny_model, adapters=[s1])
    with_both = Reranker.from_pretrained(tiny_model, adapters=[s1, h2])
    for plan in PLANS:
        got = np.array([adapted[plan][q][d] for q, d in keys])
        plain = np.array([base[plan][q][d] for q, d in keys])
        want = with_both.compute_score(pairs, plan=score.parse_plan(plan), **LENGTHS)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert np.abs(got - plain).min() > 1e-3  # the adapters really changed every score
    # H(2) serves only the compressing plan: "full" equals stage-1 alone, the other does not.
    only_s1 = {p: with_s1.compute_score(pairs, plan=score.parse_plan(p), **LENGTHS)
               for p in PLANS}
    full = np.array([adapted["full"][q][d] for q, d in keys])
    np.testing.assert_allclose(full, only_s1["full"], rtol=1e-5, atol=1e-5)
    cut = np.array([adapted[PLANS[1]][q][d] for q, d in keys])
    assert np.abs(cut - only_s1[PLANS[1]]).max() > 1e-3

    # The adapters are in the hash: resume with the same ones is fine, with others refused.
    assert score.main([*job_args, "--adapters", str(s1), str(h2), "--resume",
                       "--out", str(ad_out)]) == 0
    summary = (ad_out / "summary.json").read_text()
    assert str(s1) in summary and str(h2) in summary
    for other in ([], ["--adapters", str(s1)]):
        capsys.readouterr()
        assert score.main([*job_args, *other, "--resume", "--out", str(ad_out)]) == 2
        assert "differs in: adapters" in capsys.readouterr().err


def test_adapters_flag_and_config_key(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    cfg = score.parse_config(["--out", "o", "--adapters", str(a), str(b), "--adapters", str(c)])
    assert cfg.adapters == [str(a), str(b), str(c)]
    assert score.parse_config(["--out", "o"]).adapters == []
    assert score.JobConfig.from_dict({"adapters": str(a)}).adapters == [str(a)]
    assert score.JobConfig.from_dict({"adapters": (str(a), str(b))}).adapters == [str(a), str(b)]
    with pytest.raises(score.JobError, match="adapters has the wrong type"):
        score.JobConfig.from_dict({"adapters": [1]})
    job = score.JobConfig(out="o", model="m", corpus="c", queries="q", run="r",
                          adapters=[str(tmp_path / "missing")])
    with pytest.raises(score.JobError, match="missing: no such adapter folder"):
        job.validate()
    # No adapters: the hashed config has no "adapters" key (old jobs keep their hash).
    assert "adapters" not in score.JobConfig(out="o").hashed([], tmp_path)
    hashed = score.JobConfig(out="o", adapters=[str(a)]).hashed([], tmp_path)
    assert hashed["adapters"][0]["path"] == str(a.resolve())


def test_adapter_roles_name_the_folders_and_validate():
    """An adapter's role: its folder name (``stage1``, ``vertical``, ``h<ratio>``), the metadata
    keys saved adapters store, and the plans it serves."""
    for name, kind, ratio in [("stage1", "stage1", None), ("vertical", "vertical", None),
                              ("h4", "horizontal", 4)]:
        role = AdapterRole.parse(name)
        assert (role.kind, role.ratio, str(role)) == (kind, ratio, name)
        assert AdapterRole.from_meta(role.meta()) == role
    assert AdapterRole.from_meta({}) == AdapterRole("stage1")  # metadata without a role
    h2 = AdapterRole("horizontal", 2)
    assert h2.serves({2, 4}) and not h2.serves(set()) and AdapterRole("vertical").serves(set())
    for bad in ("h1", "h", "horizontal", "stage2", "H4"):
        with pytest.raises(ValueError, match="adapter role|ratio >= 2"):
            AdapterRole.parse(bad)
    with pytest.raises(ValueError, match="needs an int ratio >= 2"):
        AdapterRole("horizontal")
    with pytest.raises(ValueError, match="has no ratio"):
        AdapterRole("vertical", 2)
