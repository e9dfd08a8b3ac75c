"""Host-side batching and the Plan value type (plumbing, no model)."""

import pytest

from mrr_jax import Plan
from mrr_jax.inputs.batching import batch_bucket, bucket_length, pack, plan_batches
from mrr_jax.inputs.template import EncodedPair


def test_bucket_lengths_cover_pad_little_and_are_few():
    for n in range(1, 2049):
        b = bucket_length(n)
        assert b >= n and b % 8 == 0
        assert b - n < 8 or (b - n) / n <= 0.125
    assert len({bucket_length(n) for n in range(1, 513)}) <= 40
    assert [batch_bucket(n, 32) for n in (1, 2, 3, 5, 17, 32, 33)] == [1, 2, 4, 8, 32, 32, 32]


def test_batches_are_length_sorted_and_cover_everything():
    pairs = [EncodedPair((1,), (5,) * n, (2,)) for n in (3, 9, 1, 9, 4)]
    batches = plan_batches(pairs, 2)
    assert sorted(i for b in batches for i in b) == list(range(5))
    lens = [len(pairs[i]) for b in batches for i in b]
    assert lens == sorted(lens, reverse=True)
    with pytest.raises(ValueError):
        plan_batches(pairs, 0)


def test_pack_lays_out_three_left_aligned_regions():
    rows = [EncodedPair((1, 7, 8), (5, 6), (2, 3)), EncodedPair((1, 9), (4,) * 10, (2, 3))]
    a = pack(rows, 4)
    assert a["q_ids"].shape == (4, 8) and a["p_ids"].shape == (4, 16) and a["r_ids"].shape == (4, 8)
    assert a["q_len"].tolist() == [3, 2, 2, 2]  # filler rows repeat the last real row
    assert a["p_ids"][0, :3].tolist() == [5, 6, 0]
    assert int(a["padded_length"]) == 16  # longest row (14) rounded to a multiple of 8


def test_plan_text_round_trips_and_hashes():
    for text in ["mode=merge", "depth=20 compress=8:2,16:2 mode=merge",
                 "compress=4:4 mode=select", "depth=12 mode=merge"]:
        p = Plan.parse(text)
        assert str(p) == text and Plan.parse(str(p)) == p and hash(Plan.parse(text)) == hash(p)
    assert Plan.parse("mode=merge compress=16:2,8:2 depth=20") == Plan(20, {8: 2, 16: 2})
    assert Plan.parse("") == Plan()
    assert Plan(compress={8: 2}).passage_lengths(101) == [(8, 51)]
    assert Plan.parse("compress=2:3,4:2").passage_lengths(10) == [(2, 4), (4, 2)]
