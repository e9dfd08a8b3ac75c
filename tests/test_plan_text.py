"""One rule for plan text (issue: ``Plan.parse(None)`` / ``Plan.parse(20)`` gave AttributeError,
and ``Plan.parse("full")`` was refused while every CLI accepted ``full``)."""

import pytest

from mrr_jax import Plan


@pytest.mark.parametrize("text", ["full", "FULL", " full ", "", "   "])
def test_full_and_empty_text_are_the_full_model(text):
    assert Plan.parse(text) == Plan()


@pytest.mark.parametrize("bad", [None, 20, 2.5, b"depth=2", ["depth=2"]])
def test_non_text_is_a_type_error_naming_the_type(bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        Plan.parse(bad)


def test_full_does_not_combine_with_other_keys():
    with pytest.raises(ValueError, match="cannot read 'full'"):
        Plan.parse("full depth=2")


def test_round_trip_still_holds():
    p = Plan.parse("depth=20 compress=8:2,16:2 mode=select")
    assert Plan.parse(str(p)) == p
