"""The broad training set (mrr_jax.data.broad), built from small in-repo fixtures of every kind
of source (tests/fixtures/broad: a fake site-packages, /usr/share/doc, common-licenses and dpkg
status): layout, the query derivations by hand, dedup against a held-out set, BM25 negatives and
teacher scores, same bytes twice, what is never read, a missing source refused."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from mrr_jax.data import beir, trec
from mrr_jax.data.broad import build, held_out_folders, main
from mrr_jax.data.broad_pairs import HeldOut, dedup, passage_keys
from mrr_jax.data.broad_sources import Sources, file_kind
from mrr_jax.data.broad_text import (
    changelog_items,
    docstring_passage,
    first_sentence,
    numbered_heading,
    sections,
    split_first,
)
from mrr_jax.data.debref import MissingSource
from mrr_jax.data.flag import load_flag

FIX = Path(__file__).resolve().parent / "fixtures" / "broad"
FILES = ["corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv", "bm25/dev.trec",
         "train.jsonl", "dev.jsonl", "train_bm25.jsonl", "makeup.json", "makeup.md"]
PYTHON = {"fakelib": ("1.0", ("fakelib",)), "otherlib": ("2.0", ())}
DEBIAN = {"base-files": "12.4+deb12u11", "fakepkg": "1.2-1", "x11proto-dev": "2022.1-1"}
NO_HELD_OUT = (HeldOut.of([], [], 200), {})


def sources(**kw) -> Sources:
    return Sources(site=FIX / "site", doc_root=FIX / "doc", licenses=FIX / "licenses",
                   dpkg_status=FIX / "status", python=kw.pop("python", PYTHON),
                   debian=kw.pop("debian", DEBIAN), **kw)


def make(out: Path, held_out=NO_HELD_OUT, **kw) -> dict:
    return build(out, kw.pop("src", None) or sources(), held_out=held_out, min_words=8,
                 dev_percent=30, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("broad")
    return out, make(out)


def _queries(out: Path) -> dict[str, str]:
    return beir.load_queries(out / "queries.jsonl")


def test_layout_and_makeup(built):
    out, info = built
    for f in FILES:
        assert (out / f).is_file(), f
    corpus = beir.load_corpus(out / "corpus.jsonl")
    queries = _queries(out)
    qrels = {s: beir.load_qrels(out / "qrels" / f"{s}.tsv") for s in ("train", "dev")}
    assert set(qrels["train"]) | set(qrels["dev"]) == set(queries)
    assert not set(qrels["train"]) & set(qrels["dev"])
    for split in qrels.values():
        for qid, rel in split.items():
            assert rel == {qid[2:]: 1} and qid[2:] in corpus
    assert info["kinds"] == ["docstring", "pypi_description", "readme", "docs", "changelog",
                             "spec", "license"]
    assert set(info["queries"]["train"]["by_query_kind"]) == {"summary", "heading",
                                                               "first_sentence"}
    assert info["queries"]["train"]["total"] + info["queries"]["dev"]["total"] == len(queries)
    assert info["passages"]["total"] == len(corpus)
    assert info["sources"]["python"]["fakelib"]["installed"] == "1.0"
    # changelog.Debian.gz, NEWS, README.Debian, notes.md; never FAQ, man/, copyright
    assert info["sources"]["debian"]["fakepkg"]["files"] == 4
    assert info["sources"]["debian"]["fakepkg"]["sha256"]
    md = (out / "makeup.md").read_text()
    assert all(f"| {k} |" in md for k in info["kinds"]) and "| fakepkg | 1.2-1 | 4 |" in md
    assert json.loads((out / "makeup.json").read_text()) == info
    # splits are by file: a file's pairs are all in one split
    units: dict[str, set[str]] = {}
    for split, rel in qrels.items():
        for qid in rel:
            units.setdefault(qid[2:].rsplit("#", 1)[0], set()).add(split)
    assert all(len(s) == 1 for s in units.values())


def test_queries_made_three_ways(built):
    out, _ = built
    queries = set(_queries(out).values())
    corpus = {d.text for d in beir.load_corpus(out / "corpus.jsonl").values()}
    expected = {
        # summary: a docstring's summary line -> the rest, cut before its examples
        ("Stack a sequence of kelp fronds into one typed array.",
         "Every frond must have the same width; they are joined along axis and the result "
         "keeps the dtype of the first frond in the sequence."),
        # heading: a Markdown / reST / setext heading -> its own prose
        ("Streaming kelp bundles", "Bundles are read lazily from disk, one frond at a time, so "
         "memory stays flat even when the harvest holds millions of fronds from the northern "
         "coast."),
        ("Depth sorting", "The sorter groups fronds into bands of one metre and orders the bands "
         "from the surface down, so the shallowest fronds always come first in every report."),
        # heading: a numbered run-in heading of a license
        ("Grant of Harvest Rights", "Each contributor grants you a perpetual right to harvest, "
         "copy and redistribute the kelp classifier in source or binary form."),
        # first sentence -> the rest: a Debian changelog item (bug number dropped)
        ("Stop shipping the tide tables in the binary package.", "They are now generated at "
         "build time from the harbour survey, which keeps the package reproducible across "
         "architectures."),
        ("The predictor now accounts for the lunar nodal cycle.", "Forecasts for spring tides "
         "near the equinoxes are about four centimetres closer to the gauges than those of "
         "release 1.1 over a full year."),
    }
    for query, passage in expected:
        assert query in queries and passage in corpus, query
    assert "Installation" not in queries  # a generic heading
    assert not any("private" in q.lower() or "test docstring" in q.lower() for q in queries)


def test_text_derivations_by_hand():
    doc = ("Title\n=====\n\nIntro text here.\n\nPart one\n--------\n\nFirst para of part\n"
           "one.\n\n```\n# not a heading\n```\n\n# Part two\n\n- item text [link](http://x)\n"
           "\n    indented code = 1\n")
    blocks = sections(doc)
    assert [(b.heading, b.paragraphs) for b in blocks] == [
        ("Title", ["Intro text here."]), ("Part one", ["First para of part one."]),
        ("Part two", ["item text link"])]
    log = ("pkg (1.0-1) unstable; urgency=low\n\n  * First item. More of\n    it here.\n"
           "    - sub item (Closes: #1)\n\n -- A B <a@b.c>  Mon, 1 Jan 2024\n\nPlain para.\n")
    assert list(changelog_items(log)) == ["First item. More of it here. sub item",
                                          "Plain para."]
    assert first_sentence("It works (e.g. here). Then more.") == "It works (e.g. here)."
    assert split_first("Too short. " + "word " * 20) is None  # a query of 2 words
    assert split_first("A long enough query sentence. " + "Word " * 15) == (
        "A long enough query sentence.", " ".join(["Word"] * 15))
    assert numbered_heading("2. Grant of Rights. Each may copy.") == ("Grant of Rights",
                                                                      "Each may copy.")
    assert docstring_passage("Rest. Parameters ---------- x : int Examples -------- >>> f()"
                             ) == "Rest. Parameters x : int"
    assert file_kind(Path("FAQ"), "p") is None and file_kind(Path("man/x.txt"), "p") is None
    assert file_kind(Path("copyright"), "p") is None
    assert file_kind(Path("changelog.Debian.gz"), "p") == "changelog"
    assert file_kind(Path("RelNotes/2.0.txt"), "p") == "changelog"
    assert file_kind(Path("README.Debian"), "p") == "readme"
    assert file_kind(Path("notes.md"), "p") == "docs"
    assert file_kind(Path("a.txt"), "x11proto-dev") == "spec"


def test_never_reads_faq_man_pages_tests_or_private(built):
    out, _ = built
    text = "\n".join((out / f).read_text() for f in ("corpus.jsonl", "queries.jsonl"))
    for word in ("zeppelin", "quasar", "Copyright files", "test docstring", "Never read"):
        assert word not in text


def test_dedup_against_a_held_out_set(built, tmp_path):
    out, _ = built
    held = held_out_folders([FIX / "heldout"], 200)
    info = make(tmp_path, held_out=held)
    queries = set(_queries(tmp_path).values())
    corpus = beir.load_corpus(tmp_path / "corpus.jsonl")
    assert "Tide gauge calibration" in set(_queries(out).values())
    assert "Tide gauge calibration" not in queries  # "Tide-gauge calibration!" is held out
    assert "Stack a sequence of kelp fronds into one typed array." not in queries
    assert not any(d.text.startswith("Every frond must") for d in corpus.values())
    assert info["dropped"]["held_out_query"] == 1 and info["dropped"]["held_out_passage"] == 1
    assert info["held_out"] == {"folders": [str(FIX / "heldout")], "queries": 2,
                                "passages": 2}


def test_dedup_within_the_set_and_caps():
    from mrr_jax.data.broad_pairs import Pair

    def pair(i: int, query: str, passage: str, kind: str = "docs") -> Pair:
        return Pair(kind, "heading", "pkg", "pkg/f", f"d{i}", query, passage)

    pairs = [pair(0, "Same query", "zero"), pair(1, "same QUERY!", "one"),
             pair(2, "Query two", "Passage two has words"),
             pair(3, "Query three", "passage TWO has words!"), pair(4, "Query four", "four"),
             pair(5, "Query five", "five", "changelog"),
             pair(6, "Query six", "six", "changelog")]
    kept, dropped = dedup(pairs, HeldOut.of([], [], 200), cap=1, max_words=200,
                          caps={"changelog": 2})
    assert dropped == {"held_out_query": 0, "held_out_passage": 0, "repeated_query": 2,
                       "repeated_passage": 1, "over_cap": 1}
    assert [p.docid for p in kept if p.kind == "changelog"] == ["d5", "d6"]
    assert len([p for p in kept if p.kind == "docs"]) == 1
    assert passage_keys("A b, C!", 200) == ("a b c", "a b c")


def test_bm25_negatives_and_teacher_scores(built):
    out, _ = built
    corpus = beir.load_corpus(out / "corpus.jsonl")
    rows = load_flag(out / "train.jsonl")
    teacher = load_flag(out / "train_bm25.jsonl")
    assert len(rows) == len(teacher) >= 10
    passages = {d.passage for d in corpus.values()}
    for r, t in zip(rows, teacher):
        assert r.pos_scores is None and len(r.pos) == 1 and r.neg
        assert r.pos[0] not in r.neg and set(r.neg) <= passages
        assert (t.query, t.pos, t.neg) == (r.query, r.pos, r.neg)
        assert len(t.pos_scores) == 1 and len(t.neg_scores) == len(t.neg)
        assert all(s > 0 for s in t.neg_scores)  # BM25 hits, not random passages
    run = trec.load_run(out / "bm25" / "dev.trec")
    assert set(run) <= set(beir.load_qrels(out / "qrels" / "dev.tsv"))


def test_same_bytes_twice(built, tmp_path):
    out, _ = built
    make(tmp_path)
    for f in FILES:
        assert (out / f).read_bytes() == (tmp_path / f).read_bytes(), f


def test_missing_or_other_versions_refused(tmp_path):
    with pytest.raises(MissingSource, match=r"`apt-get install -y --no-install-recommends "
                                            r"gone=1\.0`"):
        make(tmp_path, src=sources(debian={**DEBIAN, "gone": "1.0"}))
    with pytest.raises(MissingSource, match=r"`pip install numpy==2\.4\.6`"):
        make(tmp_path, src=sources(python={**PYTHON, "numpy": ("2.4.6", ("numpy",))}))
    with pytest.raises(MissingSource, match=r"fakepkg 1\.2-1 \(pinned 1\.3-1\).*"
                                            r"--allow-mismatch"):
        make(tmp_path, src=sources(debian={**DEBIAN, "fakepkg": "1.3-1"}))
    info = make(tmp_path / "any", src=sources(debian={**DEBIAN, "fakepkg": "1.3-1"},
                                              allow_mismatch=True))
    assert info["version_mismatches"] == ["fakepkg 1.2-1 (pinned 1.3-1)"]
    assert not (tmp_path / "corpus.jsonl").exists()  # nothing written on a refusal


def test_command_line_refuses_a_missing_source_in_one_line(tmp_path, capsys):
    site = tmp_path / "site"
    shutil.copytree(FIX / "site", site)
    code = main(["--out", str(tmp_path / "out"), "--site", str(site), "--doc-root",
                 str(FIX / "doc"), "--dpkg-status", str(FIX / "status"), "--held-out",
                 str(FIX / "heldout")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: the broad set's sources are missing: PyPI ")
    assert "`pip install accelerate==1.15.0 " in err and "`apt-get install -y" in err
    assert not (tmp_path / "out").exists()


def test_fixture_changelog_is_gzip():
    # the Debian changelog fixture is gzip-compressed, as Debian ships it
    text = gzip.decompress((FIX / "doc" / "fakepkg" / "changelog.Debian.gz").read_bytes())
    assert text.startswith(b"fakepkg (1.2-1)")
