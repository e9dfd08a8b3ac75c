"""Data layer: readers and writers of the formats the product consumes and produces.

One module per format, each with streaming readers (``iter_*``), dict readers (``load_*``) and
atomic writers (``write_*``):

- :mod:`mrr_jax.data.beir` -- BEIR folders (``corpus.jsonl``, ``queries.jsonl``,
  ``qrels/<split>.tsv``)
- :mod:`mrr_jax.data.msmarco` -- MS MARCO TSV collection/queries and TREC-format qrels
- :mod:`mrr_jax.data.trec` -- TREC run files and qrels, ``ranking``, ``top_k``
- :mod:`mrr_jax.data.candidates` -- candidates JSONL (one query and its candidates per line)
- :mod:`mrr_jax.data.flag` -- FlagEmbedding training JSONL
- :mod:`mrr_jax.data.ids` -- ``check_ids``: unknown document/query ids in a run
- :mod:`mrr_jax.data.units` -- re-ranking units: a query and its top-k candidates' passages
- :mod:`mrr_jax.data.metrics` -- retrieval metrics of runs against qrels (ir-measures) and
  their plain-text table
- :mod:`mrr_jax.data.example` -- the embedded example dataset (``python -m mrr_jax.data.example``)
- :mod:`mrr_jax.data.required` -- input files a command line names: a missing one is reported
  with its flag and the command that makes it

Bad input raises :class:`DataError` (a ``ValueError``) naming the file, the 1-based line and
the field. Defaults: empty documents/queries are an error (``on_empty="skip"`` skips and counts
them in a :class:`Skipped` tally); unknown ids are an error (``check_ids(...,
on_missing="warn")`` drops and counts them).
"""

from mrr_jax.data.errors import DataError, Skipped
from mrr_jax.data.ids import IdCheck, check_ids
from mrr_jax.data.records import Doc, Qrels, Queries, Run

__all__ = ["DataError", "Doc", "IdCheck", "Qrels", "Queries", "Run", "Skipped", "check_ids"]
