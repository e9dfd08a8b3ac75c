"""The Debian Reference transfer set (mrr_jax.data.debref), built from a small fixture book in
the package's DocBook HTML format: layout, qrels, filters, determinism, a missing source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrr_jax.data import beir, debref, trec
from mrr_jax.data.debref import INSTALL, build, main

FILES = ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "bm25/test.trec", "stats.json"]

NOTE = ("<div class=\"note\"><table border=\"0\" summary=\"Note\"><tr><td><img alt=\"[Note]\" "
        "src=\"images/note.png\"/></td><th align=\"left\">Note</th></tr><tr><td>"
        "<p>Remember that every <code class=\"literal\">terminal</code> keeps a scrollback "
        "buffer of recent output lines.</p></td></tr></table></div>")
TABLE = ("<div class=\"table\"><a id=\"listofterminals\"/><p class=\"title\"><strong>Table 1.1. "
         "List of terminals</strong></p><div class=\"table-contents\"><table class=\"table\">"
         "<tr><td>xterm</td><td>tablecellword</td></tr></table></div></div>")


def section(level: int, anchor: str, heading: str, *paragraphs: str, inner: str = "") -> str:
    paras = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return (f"<div class=\"section\"><div class=\"titlepage\"><div><div>"
            f"<h{level} class=\"title\"><a id=\"{anchor}\"/>{heading}</h{level}>"
            f"</div></div></div>\n{paras}{inner}</div>\n")


def page(kind: str, anchor: str, title: str, body: str) -> str:
    return (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<html><head><title>{title}</title>"
            f"<meta name=\"generator\" content=\"DocBook XSL Stylesheets\"/></head><body>"
            f"<div class=\"navheader\"><table><tr><th>{title}</th></tr></table><hr/></div>"
            f"<div class=\"{kind}\"><div class=\"titlepage\"><div><div><h1 class=\"title\">"
            f"<a id=\"{anchor}\"/>{title}</h1></div></div></div>"
            f"<div class=\"toc\"><p><strong>Table of Contents</strong></p><dl><dt>tocword</dt>"
            f"</dl></div>\n{body}</div><div class=\"navfooter\"><p>navword</p></div>"
            f"</body></html>\n")


GOOD = {  # anchor -> query of the sections that make pairs
    "_terminal_emulators": "Terminal emulators",
    "_colour_settings_of_the_terminal": "Colour settings of the terminal",
    "_what_is_debian": "What is Debian",
    "_key_bindings": "Key bindings",
    "_package_pinning_policy": "Package pinning policy",
    "_backup_of_home_directories": "Backup of home directories",
}
DROPPED = {"short_passage": 1, "generic_heading": 3, "query_length": 1, "repeated_heading": 2,
           "repeated_passage": 2, "in_first_sentence": 1}
SAME = ("This paragraph is shared by two sections word for word so that neither of them can be "
        "the single relevant passage of its heading in the transfer set.")


def write_book(folder: Path) -> Path:
    """A small book: preface (with the version), two chapters, every filter exercised."""
    folder.mkdir(parents=True, exist_ok=True)
    preface = (
        "<p>This <a class=\"ulink\" href=\"https://www.debian.org/\">Debian Reference (version "
        "2.100)</a> is intended to provide a broad overview of the Debian system.</p>\n"
        + section(2, "_what_is_debian", "1. What is Debian",
                  "The Debian Project is an association of individuals who have made common "
                  "cause to create a free operating system, released with care.",
                  "Its distribution is characterized by a commitment to software freedom and "
                  "to a volunteer based, non-profit project structure.")
        + section(2, "_disclaimer", "2. Disclaimer",
                  "This document comes without any warranty of any kind; all the trademarks "
                  "are the property of their respective owners, so use it at your own risk."))
    ch01 = (
        "<p>Chapter prose is no query of its own, it introduces the sections below in a long "
        "sentence of more than twenty words for sure, really.</p>\n"
        + section(2, "_terminal_emulators", "1.1. Terminal emulators",
                  "A graphical desktop runs a program that emulates a character console in a "
                  "window<a href=\"#ftn.x\" class=\"footnote\"><sup class=\"footnote\">[1]</sup>"
                  "</a>, so that shell commands can be typed without leaving the session.",
                  inner="<pre class=\"screen\">$ prewordcommand --flag</pre>\n" + NOTE + TABLE
                  + section(3, "_colour_settings_of_the_terminal",
                            "1.1.1. Colour settings of the terminal",
                            "Palette entries decide how foreground and background text look; "
                            "most emulators read them from a profile in the home directory, "
                            "and some offer a dialog for editing them interactively."))
        + section(2, "_examples", "1.2. Examples",
                  "A few worked cases follow here; they show typical invocations for the "
                  "reader to try out on a spare machine before touching a real server.")
        + section(2, "_overview", "1.3. The Overview",
                  "An outline of what comes next in this chapter, with pointers to the other "
                  "parts of the book that treat each of the subjects in more depth.")
        + section(2, "_log_rotation", "1.4. Log rotation",
                  "Old journal files are compressed and removed after a while by a daily job "
                  "so that the partition holding them never fills up with stale messages.")
        + section(2, "_short", "1.5. A short section", "Too few words here.")
        + section(2, "_mounting_remote_disks", "1.6. Mounting remote disks",
                  "Mounting remote disks is done with sshfs or NFS. Both need a running server "
                  "on the other side and a mount point that the user is allowed to write to.")
        + section(2, "_swap", "1.7. Swap",
                  "Swap space extends memory onto a disk partition or a file, which helps a "
                  "machine with little RAM to survive short peaks of demand without crashing.")
        + section(2, "_key bindings", "1.8. Key bindings",
                  "Readline maps keystrokes such as Ctrl-A and Ctrl-E to editing commands; the "
                  "mapping lives in a small file that every interactive shell reads at start.")
        + "<div class=\"footnotes\"><div class=\"footnote\"><p>footnoteword text of the first "
          "footnote that belongs to no section at all.</p></div></div>")
    ch02 = (
        section(2, "_package_pinning_policy", "2.1. Package pinning policy",
                "APT preferences assign priorities to releases and origins; a higher priority "
                "wins when several candidate versions of a package are available to install.")
        + section(2, "_log_rotation_again", "2.2. Log rotation",
                  "Rotation of service logs is configured per package under a drop-in folder "
                  "whose files name the logs, how often to rotate and how many to keep.")
        + section(2, "_shared_a", "2.3. First shared text", SAME)
        + section(2, "_shared_b", "2.4. Second shared text", SAME)
        + section(2, "_backup_of_home_directories", "2.5. Backup of home directories",
                  "Copying personal files regularly to another disk or host protects them "
                  "against hardware failure, mistakes and theft; rsync makes it incremental."))
    (folder / "pr01.en.html").write_text(page("preface", "_preface", "Preface", preface))
    (folder / "ch01.en.html").write_text(
        page("chapter", "_shell_basics", "Chapter 1. Shell basics", ch01))
    ch02 = ch02.replace('<a id="_backup_of_home_directories"/>',  # an HTML-style anchor
                        '<a id="_backup_of_home_directories"></a>')
    (folder / "ch02.en.html").write_text(
        page("chapter", "_package_management", "Chapter 2. Package management", ch02))
    (folder / "index.en.html").write_text("<html><body><p>index only, no sections at all, "
                                          "skipped entirely by the builder</p></body></html>")
    (folder / "ch01.fr.html").write_text("<html><body>une autre langue</body></html>")
    return folder


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_book(tmp_path_factory.mktemp("debref") / "book")


@pytest.fixture(scope="module")
def built(book: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("debref") / "data"
    return out, build(out, source=book)


def test_layout_and_stats(built: tuple[Path, dict]) -> None:
    out, stats = built
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(FILES)
    assert json.loads((out / "stats.json").read_text()) == stats
    assert stats["package"] == "debian-reference-en" and stats["version"] == "2.100"
    assert stats["pinned"] == "2.100" and stats["install"] == INSTALL
    assert stats["files"] == 3  # pr01, ch01, ch02: not the index, not another language
    assert stats["sections"] == len(GOOD) + sum(DROPPED.values())
    assert stats["dropped"] == DROPPED
    assert stats["docs"] == stats["queries"]["test"] == len(GOOD)
    assert set(stats["bm25"]) == {"test"}
    assert set(stats["bm25"]["test"]) == {"RR@10", "nDCG@10", "R@100"}
    run = trec.load_run(out / "bm25" / "test.trec")
    found = sum(q[2:] in run.get(q, {}) for q in (f"q:{a}" for a in GOOD))
    assert stats["bm25"]["test"]["R@100"] == round(found / len(GOOD), 4) > 0


def test_queries_and_qrels(built: tuple[Path, dict]) -> None:
    out, _ = built
    corpus, queries, qrels = beir.load_split(out, "test")
    assert {q: queries[q] for q in queries} == {f"q:{a}": t for a, t in GOOD.items()}
    assert set(corpus) == set(GOOD)
    assert list(corpus) == ["_what_is_debian", "_terminal_emulators",  # book order
                            "_colour_settings_of_the_terminal", "_key_bindings",
                            "_package_pinning_policy", "_backup_of_home_directories"]
    for qid, docs in qrels.items():
        assert docs == {qid.removeprefix("q:"): 1}  # exactly its own section
    assert corpus["_terminal_emulators"].title == "Shell basics"  # the chapter, not the heading
    assert corpus["_what_is_debian"].title == "Preface"
    for qid, text in queries.items():
        assert text.lower() not in debref.first_sentence(corpus[qid[2:]].text).lower()
    run = trec.load_run(out / "bm25" / "test.trec")
    assert set(run) <= set(queries)  # a query without a word in common has no hit
    assert all(set(docs) <= set(corpus) and len(docs) <= 100 for docs in run.values())


def test_passage_is_the_sections_own_prose(built: tuple[Path, dict]) -> None:
    out, _ = built
    corpus = beir.load_corpus(out / "corpus.jsonl")
    text = corpus["_terminal_emulators"].text
    assert text.startswith("A graphical desktop runs a program that emulates a character "
                           "console in a window, so that")
    assert "scrollback buffer" in text  # a note is prose
    for absent in ("[1]", "prewordcommand", "tablecellword", "List of terminals", "Palette",
                   "footnoteword", "tocword", "navword", "Note "):
        assert absent not in text, absent
    assert "Palette entries" in corpus["_colour_settings_of_the_terminal"].text
    assert all(" ".join(d.text.split()) == d.text for d in corpus.values())
    assert "footnoteword" not in corpus["_key_bindings"].text


def test_deterministic(book: Path, tmp_path: Path) -> None:
    build(tmp_path / "a", source=book)
    build(tmp_path / "b", source=book)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_passages_cut(built: tuple[Path, dict], book: Path, tmp_path: Path) -> None:
    full = beir.load_corpus(built[0] / "corpus.jsonl")
    assert built[1]["truncated_passages"] == 0
    stats = build(tmp_path / "cut", source=book, max_words=25)
    corpus = beir.load_corpus(tmp_path / "cut" / "corpus.jsonl")
    long = [d for d in full if len(full[d].text.split()) > 25]
    assert 0 < len(long) < len(full) and stats["truncated_passages"] == len(long)
    for d, doc in corpus.items():
        assert doc.text.split() == full[d].text.split()[:25]
    assert stats["params"]["max_words"] == 25


def test_main_builds(book: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "out"), "--source", str(book)]) == 0
    captured = capsys.readouterr()
    assert "6 queries, 6 passages from debian-reference-en 2.100" in captured.out
    assert "bm25 test" in captured.out and captured.err == ""
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    assert main([str(tmp_path / "busy"), "--source", str(book)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main([str(tmp_path / "busy"), "--source", str(book), "--force"]) == 0


def test_missing_source_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert main([str(out), "--source", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert INSTALL in err and "--source" in err and "does not exist" in err
    assert INSTALL == "apt-get install -y --no-install-recommends debian-reference-en=2.100"
    monkeypatch.setattr(debref, "DEFAULT_SOURCE", tmp_path / "not-installed")
    assert main([str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not installed" in err and INSTALL in err
    assert not out.exists()
    (tmp_path / "empty").mkdir()
    assert main([str(out), "--source", str(tmp_path / "empty")]) == 2
    assert "has no HTML files" in capsys.readouterr().err
