"""In-memory records shared by every format: documents, runs and qrels.

- ``Doc``: one passage of a corpus (``docid``, ``text``, optional ``title``).
- ``Run``: ``{qid: {docid: score}}`` -- a ranking per query, higher score first.
- ``Qrels``: ``{qid: {docid: relevance}}`` -- integer judgements (> 0 means relevant).
- Queries are plain ``{qid: text}`` dicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]
Queries = dict[str, str]


@dataclass(frozen=True, slots=True)
class Doc:
    """One document of a corpus.

    A document is *empty* when its title and text are both blank; readers reject it unless
    asked to skip it (``on_empty="skip"``).
    """

    docid: str
    text: str
    title: str = ""

    @property
    def passage(self) -> str:
        """The text a re-ranker reads: ``"<title> <text>"``; the text (or title) alone if the
        other is blank."""
        title = self.title.strip()
        if not title:
            return self.text
        return f"{title} {self.text}" if self.text.strip() else title

    @property
    def is_empty(self) -> bool:
        """True when title and text are both blank."""
        return not self.text.strip() and not self.title.strip()


def qrels_from(triples: Iterable[tuple[str, str, int]]) -> Qrels:
    """``{qid: {docid: relevance}}`` from (qid, docid, relevance) triples."""
    qrels: Qrels = {}
    for qid, docid, rel in triples:
        qrels.setdefault(qid, {})[docid] = rel
    return qrels
