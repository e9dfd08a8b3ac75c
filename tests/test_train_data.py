"""The training input pipeline (mrr_jax.inputs.groups): reading, groups, order, sharding, shapes."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mrr_jax.data.errors import DataError
from mrr_jax.inputs.groups import (
    DevGroups,
    TrainData,
    dev_groups,
    fixed_group,
    load_flag_dataset,
    sample_group,
)
from mrr_jax.inputs.template import DEFAULT_PROMPT, load_tokenizer


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    return load_tokenizer(smollm2_dir)


def _row(i: int, n_pos: int = 2, n_neg: int = 20, scores: str = "both",
         prompt: str | None = None) -> dict:
    """Query i: texts name themselves; teacher scores encode the text's index."""
    row = {"query": f"query number {i}",
           "pos": [f"q{i} positive {j}" for j in range(n_pos)],
           "neg": [f"q{i} negative {j}" for j in range(n_neg)]}
    if scores in ("both", "pos"):
        row["pos_scores"] = [100.0 + j for j in range(n_pos)]
    if scores in ("both", "neg"):
        row["neg_scores"] = [float(j) for j in range(n_neg)]
    if prompt is not None:
        row["prompt"] = prompt
    return row


def _write(path: Path, rows: list[dict] | list[str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _data(tmp_path: Path, n: int = 24, **row_kw) -> Path:
    return _write(tmp_path / "train.jsonl", [_row(i, **row_kw) for i in range(n)])


def _make(path, tok, **kw) -> TrainData:
    kw.setdefault("global_batch", 4)
    kw.setdefault("group_size", 4)
    return TrainData(path, *tok, **kw)


def _same(a, b) -> None:
    for k in ("q_ids", "p_ids", "r_ids", "q_len", "p_len", "r_len", "teacher", "teacher_mask",
              "truncated", "query_index"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape, k
        np.testing.assert_array_equal(x, y, err_msg=k)


def _texts(tok, batch, region: str = "p") -> list[str]:
    ids, lens = getattr(batch, region + "_ids"), getattr(batch, region + "_len")
    return [tok[0].decode(ids[r, :lens[r]].tolist()) for r in range(ids.shape[0])]


def _passages(tok, batch) -> list[list[str]]:
    """Decoded passage texts per query group (without the "B: " prefix)."""
    texts = [t.removeprefix("B: ") for t in _texts(tok, batch)]
    g = batch.group_size
    return [texts[i * g:(i + 1) * g] for i in range(batch.num_queries)]


# ----------------------------------------------------------------------------- order, hosts


def test_deterministic_across_calls_and_fresh_objects(tmp_path, tok):
    path = _data(tmp_path)
    a, b = _make(path, tok), _make(path, tok)
    for step in (0, 3, 7, 13):
        _same(a.batch(step), a.batch(step))
        _same(a.batch(step), b.batch(step))
    c = _make(path, tok, seed=7)
    assert not np.array_equal(a.batch(0).query_index, c.batch(0).query_index)


def test_epoch_order_and_drop_last(tmp_path, tok):
    data = _make(_data(tmp_path, n=26), tok, global_batch=4)
    assert data.num_queries == 26 and data.steps_per_epoch == 6  # 2 left-over queries dropped
    for epoch in (0, 1):
        seen = np.concatenate([data.batch(epoch * 6 + k).query_index for k in range(6)])
        assert len(set(seen.tolist())) == 24  # no query twice within an epoch
        np.testing.assert_array_equal(seen, data.order(epoch)[:24])
    assert not np.array_equal(data.order(0), data.order(1))
    assert data.epoch_of(6) == 1 and data.epoch_of(5) == 0


def test_hosts_concatenate_to_single_host(tmp_path, tok):
    rows = [_row(i) for i in range(24)]
    rows[5]["neg"] = [" ".join(["long"] * 150)] * 20  # query 5: long passages, a wider bucket
    path = _write(tmp_path / "t.jsonl", rows)
    for buckets in (None, (32, 64, 128, 208)):
        data = _make(path, tok, global_batch=8, passage_buckets=buckets)
        host_would_differ = False
        for step in range(6):
            whole = data.batch(step)
            for n in (2, 4):
                split = [data.batch(step, p, n) for p in range(n)]
                assert {b.shape[1:] for b in split} == {whole.shape[1:]}  # hosts agree
                joined = split[0]
                for b in split[1:]:
                    joined = _concat(joined, b)
                _same(joined, whole)
                host_would_differ |= len({b.p_len.max() > 32 for b in split}) > 1
        assert host_would_differ or buckets is None


def _concat(a, b):
    from dataclasses import fields, replace

    return replace(a, **{f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)])
                         for f in fields(a)})


def test_bad_process_split(tmp_path, tok):
    data = _make(_data(tmp_path), tok, global_batch=6)
    with pytest.raises(ValueError, match="split evenly over 4 processes"):
        data.batch(0, 0, 4)
    with pytest.raises(ValueError, match="process_index"):
        data.batch(0, 2, 2)
    with pytest.raises(ValueError, match="larger than the 24"):
        _make(_data(tmp_path), tok, global_batch=25)


def test_resume_is_independent_of_history(tmp_path, tok):
    path = _data(tmp_path)
    walked = _make(path, tok)
    for step in range(14):  # walks through epochs 0, 1, 2
        walked.batch(step)
    fresh = _make(path, tok)
    _same(walked.batch(3), fresh.batch(3))
    _same(walked.batch(14), _make(path, tok).batch(14))
    later = _make(path, tok)
    later.batch(20)
    _same(later.batch(2), fresh.batch(2))


def test_group_draw_depends_on_seed_epoch_query_only(tmp_path, tok):
    data = _make(_data(tmp_path), tok, group_size=8)
    p1, n1 = data.group(5, 1)
    data.batch(0)
    data.batch(9)
    p2, n2 = data.group(5, 1)
    assert p1 == p2 and np.array_equal(n1, n2)
    draws = {tuple(data.group(5, e)[1].tolist()) for e in range(6)}
    assert len(draws) > 1  # a new draw each epoch


# ----------------------------------------------------------------------------- groups


def test_group_rule_positive_first_distinct_negatives(tmp_path, tok):
    data = _make(_data(tmp_path, n_pos=3, n_neg=20), tok, global_batch=8, group_size=8)
    seen_pos = set()
    for step in range(6):
        b = data.batch(step)
        for qi, group in zip(b.query_index, _passages(tok, b)):
            row = _row(int(qi), n_pos=3, n_neg=20)
            assert group[0] in row["pos"]
            seen_pos.add(group[0].split()[-1])
            assert all(t in row["neg"] for t in group[1:])
            assert len(set(group[1:])) == 7  # without replacement
    assert seen_pos == {"0", "1", "2"}  # the positive is a random choice


def test_group_tiles_short_negative_lists(tmp_path, tok):
    rows = [_row(i, n_neg=3) for i in range(8)]
    data = _make(_write(tmp_path / "t.jsonl", rows), tok, global_batch=4, group_size=8)
    for step in range(4):
        for qi, group in zip(data.batch(step).query_index, _passages(tok, data.batch(step))):
            counts = Counter(group[1:])
            assert sum(counts.values()) == 7 and set(counts) <= set(rows[qi]["neg"])
            assert max(counts.values()) <= 3  # ceil(7 / 3) copies at most
            assert min(counts.values()) >= 1  # 7 of 9 tiled slots: each text survives
    for n_neg, g in ((1, 16), (2, 16), (5, 16), (15, 16), (4, 4)):
        rng = np.random.default_rng(0)
        for _ in range(20):
            pos, negs = sample_group(2, n_neg, g, rng)
            c = Counter(negs.tolist())
            assert pos in (0, 1) and len(negs) == g - 1 and set(c) <= set(range(n_neg))
            assert max(c.values()) <= -(-(g - 1) // n_neg)
    np.testing.assert_array_equal(fixed_group(3, 8), [0, 1, 2, 0, 1, 2, 0])
    np.testing.assert_array_equal(fixed_group(20, 4), [0, 1, 2])
    assert fixed_group(0, 1).size == 0 and sample_group(1, 0, 1, rng)[1].size == 0


def test_group_size_one_allows_no_negatives(tmp_path, tok):
    data = _make(_data(tmp_path, n_neg=0), tok, group_size=1)
    b = data.batch(0)
    assert b.shape[0] == 4 and b.teacher.shape == (4, 1)


def test_per_row_prompt(tmp_path, tok):
    long_prompt = "Is passage B, " + "really and truly, " * 4 + "relevant to query A?"
    rows = [_row(i, prompt="Does B answer A?" if i % 3 == 1 else
                 long_prompt if i % 3 == 2 else None) for i in range(12)]
    data = _make(_write(tmp_path / "t.jsonl", rows), tok, global_batch=12)
    b = data.batch(0)
    prompts = _texts(tok, b, "r")
    for r, text in enumerate(prompts):
        expect = rows[b.query_index[r // 4]].get("prompt") or DEFAULT_PROMPT
        assert text == "\n" + expect
    rb = b.r_ids.shape[1]
    assert rb % 8 == 0 and rb >= b.r_len.max() and rb > 16  # widened for the long prompt
    only_default = _make(_write(tmp_path / "d.jsonl", [_row(i) for i in range(8)]), tok)
    assert only_default.batch(0).r_ids.shape[1] == 16  # one fixed Rb per dataset


# ----------------------------------------------------------------------------- teacher


def test_teacher_follows_chosen_texts(tmp_path, tok):
    rows = [_row(i, n_neg=5, scores=("both", "pos", "neg", "none")[i % 4]) for i in range(16)]
    data = _make(_write(tmp_path / "t.jsonl", rows), tok, global_batch=16, group_size=8)
    b = data.batch(0)
    assert b.teacher.dtype == np.float32 and b.teacher_mask.dtype == bool
    for i, (qi, group) in enumerate(zip(b.query_index, _passages(tok, b))):
        if qi % 4 == 0:
            assert b.teacher_mask[i]
            expect = [100.0 + int(group[0].split()[-1])] + [float(t.split()[-1])
                                                            for t in group[1:]]
            np.testing.assert_array_equal(b.teacher[i], expect)
        else:  # only one of the two score lists, or none: no teacher, never a uniform one
            assert not b.teacher_mask[i]
            assert not b.teacher[i].any()


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("obj", "field"), [
    ({"query": "q", "pos": ["p"]}, "neg"),
    ({"query": "q", "pos": ["p"], "neg": ["a", "  "]}, "neg[1]"),
    ({"query": "", "pos": ["p"], "neg": ["a"]}, "query"),
    ({"query": "q", "pos": [""], "neg": ["a"]}, "pos[0]"),
    ({"query": "q", "pos": ["p"], "neg": ["a", "b"], "neg_scores": [1.0]}, "neg_scores"),
    ('{"query": "q", "pos": ["p"], "neg": ["a"], "pos_scores": [NaN]}', "pos_scores[0]"),
    ({"query": "q", "pos": ["p"], "neg": []}, "neg"),  # no negatives for group_size > 1
    ({"query": "q", "pos": ["p"], "neg": ["a"], "prompt": ""}, "prompt"),
])
def test_errors_name_file_line_field(tmp_path, tok, obj, field):
    rows: list = [_row(0), "", _row(1), obj, _row(2)]  # the bad row is on line 4
    path = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as e:
        _make(path, tok, global_batch=2)
    assert (e.value.path, e.value.line, e.value.field) == (str(path), 4, field)
    assert "bad.jsonl" in str(e.value) and "line 4" in str(e.value) and field in str(e.value)


def test_error_in_second_file(tmp_path, tok):
    good = _data(tmp_path)
    bad = _write(tmp_path / "second.jsonl", [_row(50), {"query": "q", "pos": ["p"], "neg": []}])
    with pytest.raises(DataError) as e:
        _make([good, bad], tok)
    assert (e.value.path, e.value.line, e.value.field) == (str(bad), 2, "neg")


def test_multiple_files_and_folder(tmp_path, tok):
    (tmp_path / "d").mkdir()
    _write(tmp_path / "d" / "a.jsonl", [_row(i) for i in range(5)])
    _write(tmp_path / "d" / "b.jsonl", [_row(i) for i in range(5, 12)])
    ds, files = load_flag_dataset(tmp_path / "d")
    assert [f.name for f in files] == ["a.jsonl", "b.jsonl"] and len(ds) == 12
    assert ds[7]["query"] == "query number 7" and (ds[7]["file"], ds[7]["line"]) == (1, 3)
    data = _make([tmp_path / "d" / "a.jsonl", tmp_path / "d" / "b.jsonl"], tok)
    assert data.num_queries == 12 and data.steps_per_epoch == 3


# ----------------------------------------------------------------------------- cache


def test_rewritten_file_is_never_read_from_a_stale_cache(tmp_path, tok):
    path = tmp_path / "train.jsonl"
    cache = tmp_path / "hf_cache"

    def queries(**kw):
        data = _make(path, tok, global_batch=2, **kw)
        return sorted(data.dataset["query"])

    _write(path, [_row(i) for i in range(4)])
    stat = path.stat()
    first = queries(), queries(cache_dir=cache)
    # Same path, same size, same mtime -- only the bytes differ.
    _write(path, [_row(i) for i in range(5, 9)])
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = queries(), queries(cache_dir=cache)
    assert first[0] == first[1] == [f"query number {i}" for i in range(4)]
    assert second[0] == second[1] == [f"query number {i}" for i in range(5, 9)]
    _write(path, [_row(i) for i in range(4)])  # the old bytes again: cache reuse is fine
    assert queries(cache_dir=cache) == first[0]


# ----------------------------------------------------------------------------- shapes


def test_static_shapes_and_buckets(tmp_path, tok):
    rows = [_row(i) for i in range(16)]
    rows[3]["neg"] = [" ".join(["word"] * 400)] * 3  # far over the limits: truncated
    del rows[3]["neg_scores"]
    rows[3]["query"] = " ".join(["ask"] * 100)
    path = _write(tmp_path / "t.jsonl", rows)
    data = _make(path, tok, global_batch=4, group_size=4, passage_buckets=(16, 64, 208))
    shapes = set()
    for step in range(data.steps_per_epoch * 3):
        b = data.batch(step)
        r, qb, pb, rb = b.shape
        shapes.add(b.shape)
        assert (r, qb, rb) == (16, 40, 16) and pb in (16, 64, 208)
        assert pb >= b.p_len.max() and (pb == 16 or pb > 16 and b.p_len.max() > 16)
        for k in ("q_ids", "p_ids", "r_ids", "q_len", "p_len", "r_len"):
            assert getattr(b, k).dtype == np.int32
        assert b.teacher.shape == (4, 4) and b.teacher_mask.shape == (4,)
        for name in "qpr":
            ids, lens = getattr(b, name + "_ids"), getattr(b, name + "_len")
            pad = np.arange(ids.shape[1])[None, :] >= lens[:, None]
            assert (ids[pad] == 0).all() and (lens >= 1).all()
        assert (b.q_ids[:, 0] == tok[1]).all()
        total = b.q_len + b.p_len + b.r_len
        assert (total <= 32 + 192).all() and (b.q_len <= 34).all() and (b.p_len <= 208).all()
        if 3 in b.query_index.tolist():
            assert b.n_truncated >= 4 and b.p_len.max() <= 208 and pb == 208
        else:
            assert b.n_truncated == 0
    assert len(shapes) >= 2  # small batches use a smaller bucket
    arrays = data.batch(0).arrays()
    assert set(arrays) == {"q_ids", "p_ids", "r_ids", "q_len", "p_len", "r_len", "teacher",
                           "teacher_mask"}
    with pytest.raises(ValueError, match="largest passage bucket"):
        _make(path, tok, passage_buckets=(64, 128))
    padded = _make(path, tok, pad_id=7).batch(0)
    assert (padded.p_ids[0, padded.p_len[0]:] == 7).all()


def test_lengths_follow_the_reference_truncation(tmp_path, tok):
    long_q = " ".join(f"w{i}" for i in range(200))
    long_p = " ".join(f"p{i}" for i in range(600))
    path = _write(tmp_path / "t.jsonl", [
        {"query": long_q, "pos": [long_p], "neg": [long_p]},
        {"query": "hi", "pos": [long_p], "neg": [long_p]}])
    b = _make(path, tok, global_batch=2, group_size=2).batch(0)
    tk = tok[0]
    prompt_seg = len(tk.encode("\n", add_special_tokens=False).ids) + len(
        tk.encode(DEFAULT_PROMPT, add_special_tokens=False).ids)
    for r in range(4):
        assert b.r_len[r] == prompt_seg and b.truncated[r]
        if b.query_index[r // 2] == 0:  # the long query: 32 tokens + bos + "\n"
            assert b.q_len[r] == 34
            assert b.q_len[r] + b.p_len[r] + b.r_len[r] == 224  # the passage fills the rest
        else:  # a short query: the passage gets the rest, at most the pre-cut 192 + 32 // 2
            assert b.q_len[r] < 10
            assert b.p_len[r] == min(208, 224 - b.q_len[r] - b.r_len[r])


# ----------------------------------------------------------------------------- real data


def test_real_example_dataset(example_data, tok):
    data = TrainData(example_data / "train.jsonl", *tok, global_batch=8, group_size=16)
    assert data.steps_per_epoch == data.num_queries // 8 >= 5
    lens = []
    for step in (0, 1, data.steps_per_epoch + 2):
        b = data.batch(step)
        assert b.shape == (128, 40, 208, 16)
        assert not b.teacher_mask.any()  # BM25 negatives, no teacher scores
        assert (b.q_len >= 4).all() and (b.q_len <= 34).all()
        assert (b.p_len >= 4).all() and (b.q_len + b.p_len + b.r_len <= 224).all()
        assert all(t.startswith("A: ") for t in _texts(tok, b, "q"))
        assert all(t.startswith("B: ") for t in _texts(tok, b, "p"))
        lens.append(b.p_len)
        assert b.n_truncated < len(b.truncated) // 2
    assert np.concatenate(lens).mean() > 40  # real passages, not stubs

    dev = dev_groups(example_data / "dev.jsonl", *tok, group_size=16)
    again = dev_groups(example_data / "dev.jsonl", *tok, group_size=16)
    _same(dev.batch, again.batch)
    _check_dev(dev, tok)


def _check_dev(dev: DevGroups, tok) -> None:
    from mrr_jax.evaluation.evaluate import evaluate_run

    qd, g = dev.batch.num_queries, dev.batch.group_size
    assert len(dev.qids) == qd and len(dev.row_docid) == qd * g == len(dev.label)
    assert dev.label.reshape(qd, g)[:, 0].all() and not dev.label.reshape(qd, g)[:, 1:].any()
    for q in range(qd):  # document ids unique within a query
        assert len(set(dev.row_docid[q * g:(q + 1) * g])) == g
    positive_first = -np.tile(np.arange(g), qd).astype(float)
    assert evaluate_run(dev.run(positive_first), dev.qrels(), ["RR@10"])["RR@10"] == 1.0
    last = np.tile(np.arange(g), qd).astype(float)
    assert evaluate_run(dev.run(last), dev.qrels(), ["RR@10"])["RR@10"] < 0.2
    chunks = list(dev.chunks(4))
    assert sum(n for _, n in chunks) == qd
    assert len({c.shape for c, _ in chunks}) == 1
    _same(chunks[0][0], dev.batch.take(range(4)))


def test_dev_groups_fixed_and_tiled(tmp_path, tok):
    rows = [_row(i, n_neg=(2 if i == 1 else 20)) for i in range(10)]
    path = _write(tmp_path / "dev.jsonl", rows)
    dev = dev_groups(path, *tok, group_size=6)
    groups = _passages(tok, dev.batch)
    assert groups[0] == ["q0 positive 0", *(f"q0 negative {j}" for j in range(5))]
    assert groups[1] == ["q1 positive 0", "q1 negative 0", "q1 negative 1", "q1 negative 0",
                         "q1 negative 1", "q1 negative 0"]
    assert dev.row_docid[6:12] == ["pos0", "neg0", "neg1", "neg0#1", "neg1#1", "neg0#2"]
    assert dev.qids[:2] == ["line1", "line2"] and dev.batch.teacher_mask.all()
    np.testing.assert_array_equal(dev.batch.teacher[0], [100, 0, 1, 2, 3, 4])
    sub = dev_groups(path, *tok, group_size=6, max_queries=4, seed=3)
    assert sub.batch.num_queries == 4 and list(sub.batch.query_index) == sorted(
        sub.batch.query_index)
    _same(sub.batch, dev_groups(path, *tok, group_size=6, max_queries=4, seed=3).batch)
    _check_dev(dev, tok)
    with pytest.raises(DataError) as e:
        dev_groups(_write(tmp_path / "d2.jsonl", [_row(0), _row(1, n_neg=0)]), *tok,
                   group_size=4)
    assert (e.value.line, e.value.field) == (2, "neg")
