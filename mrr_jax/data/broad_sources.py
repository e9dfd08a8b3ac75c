"""The sources of the broad training set (:mod:`mrr_jax.data.broad`): finding them, checking
their pinned versions (:mod:`mrr_jax.data.broad_pins`) and reading their documents.

Kinds of text (the ``source kind`` of a document):

- ``docstring``: docstrings of the pinned PyPI libraries (parsed with :mod:`ast`, never
  imported; tests, benchmarks and vendored code skipped);
- ``pypi_description``: their PyPI long descriptions (the body of ``*.dist-info/METADATA``);
- ``readme``: README files of the pinned Debian packages (``/usr/share/doc/<package>``) and
  READMEs shipped inside the PyPI packages;
- ``docs``: other Markdown, reST and plain-text documentation in those places;
- ``changelog``: Debian changelogs, upstream changelogs, NEWS files and release notes;
- ``spec``: protocol specifications (:data:`~mrr_jax.data.broad_pins.SPEC_PACKAGES`);
- ``license``: ``/usr/share/common-licenses`` (Debian ``base-files``) and the license files of
  the PyPI distributions.

Never read: manual pages (``/usr/share/man``, any ``man`` folder), anything named FAQ, the
Debian Reference, copyright files, HTML.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path

from mrr_jax.data.broad_pins import DEBIAN, PYTHON, SPEC_PACKAGES
from mrr_jax.data.debref import MissingSource
from mrr_jax.data.example import Entry, _entries

KINDS = ("docstring", "pypi_description", "readme", "docs", "changelog", "spec", "license")
SKIP_DIRS = frozenset({"test", "tests", "testing", "__pycache__", "benchmarks", "examples",
                       "_vendor", "vendor", "third_party", "man", "manpages", "cli"})
_CHANGELOG = re.compile(r"^(?:changelog|changes|news|history|relnotes|release[-_.]?notes)",
                        re.I)
_TEXT = re.compile(r"\.(?:md|rst|txt)$", re.I)
_NEVER = re.compile(r"faq|copyright|licen[cs]e|copying|^conf\.py", re.I)
_LICENSE = re.compile(r"^(?:licen[cs]e|copying|notice)", re.I)


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the sources lie and which versions they must have."""

    site: Path  # site-packages of the environment
    doc_root: Path = Path("/usr/share/doc")
    licenses: Path = Path("/usr/share/common-licenses")
    dpkg_status: Path = Path("/var/lib/dpkg/status")
    python: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=lambda: PYTHON)
    debian: Mapping[str, str] = field(default_factory=lambda: DEBIAN)
    allow_mismatch: bool = False


@dataclass(frozen=True, slots=True)
class SourceDoc:
    """One document: its kind, the package it ships in, its path there, its text."""

    kind: str
    package: str
    path: str
    text: str


def dist_key(name: str) -> str:
    """A distribution name normalized (PEP 503): ``ML_Collections`` -> ``ml-collections``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def python_installed(site: Path) -> dict[str, tuple[str, Path]]:
    """``{distribution: (version, its .dist-info folder)}`` of ``site``."""
    found: dict[str, tuple[str, Path]] = {}
    for d in sorted(site.glob("*.dist-info")) if site.is_dir() else []:
        meta = d / "METADATA"
        if meta.is_file():
            headers = BytesParser().parsebytes(meta.read_bytes(), headersonly=True)
            if headers["Name"] and headers["Version"]:
                found[dist_key(headers["Name"])] = (str(headers["Version"]), d)
    return found


def metadata_body(data: bytes) -> str:
    """The long description of a ``METADATA`` file: what follows its headers (UTF-8)."""
    data = data.replace(b"\r\n", b"\n")
    _, sep, body = data.partition(b"\n\n")
    return body.decode("utf-8", "replace") if sep else ""


def debian_installed(status: Path) -> dict[str, str]:
    """``{package: version}`` of the installed packages in a dpkg status file."""
    found: dict[str, str] = {}
    text = status.read_text(encoding="utf-8", errors="replace") if status.is_file() else ""
    for para in text.split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+):[ \t]*(.*)$", para, flags=re.M))
        if fields.get("Package") and fields.get("Status", "").endswith(" installed"):
            found[fields["Package"]] = fields.get("Version", "")
    return found


def check(sources: Sources) -> tuple[dict[str, tuple[str, Path]], dict[str, str], list[str]]:
    """The installed pinned distributions and packages, and the version mismatches allowed.

    Raises :class:`~mrr_jax.data.debref.MissingSource` (one line naming what to install) when a
    pinned source is missing, or has another version without ``allow_mismatch``.
    """
    py = python_installed(sources.site)
    deb = debian_installed(sources.dpkg_status)
    missing_py = [f"{n}=={v}" for n, (v, _) in sorted(sources.python.items()) if n not in py]
    missing_deb = [f"{n}={v}" for n, v in sorted(sources.debian.items())
                   if n not in deb or not (sources.doc_root / n).is_dir()]
    if missing_py or missing_deb:
        what = []
        if missing_py:
            what.append(f"PyPI {', '.join(missing_py)} are not installed in {sources.site}: "
                        f"`pip install {' '.join(missing_py)}`")
        if missing_deb:
            what.append(f"Debian {', '.join(missing_deb)} are not installed (no "
                        f"{sources.doc_root}/<package>): `apt-get install -y "
                        f"--no-install-recommends {' '.join(missing_deb)}`")
        raise MissingSource("the broad set's sources are missing: " + "; ".join(what))
    mismatched = [f"{n} {py[n][0]} (pinned {v})" for n, (v, _) in sorted(sources.python.items())
                  if py[n][0].split("+")[0] != v]
    mismatched += [f"{n} {deb[n]} (pinned {v})" for n, v in sorted(sources.debian.items())
                   if deb[n] != v]
    if mismatched and not sources.allow_mismatch:
        raise MissingSource(f"the broad set's sources have other versions than pinned: "
                            f"{'; '.join(mismatched)}; install the pinned ones (`pip install "
                            f"NAME==VERSION`, `apt-get install NAME=VERSION`) or build from "
                            f"these with --allow-mismatch (other bytes)")
    return ({n: py[n] for n in sorted(sources.python)},
            {n: deb[n] for n in sorted(sources.debian)}, mismatched)


def read_text(path: Path) -> str:
    """A text file (gzip-compressed if ``.gz``): UTF-8, else Latin-1."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _walk(root: Path, skip_dirs: frozenset[str] = SKIP_DIRS) -> Iterator[Path]:
    """Regular files under ``root`` (no symlinks), in sorted order, skipped folders left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not
                             d.startswith((".", "test")))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if p.is_file() and not p.is_symlink():
                yield p


def file_kind(path: Path, package: str) -> str | None:
    """The kind of a documentation file (by name; None: not read)."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if _NEVER.search(name) or any(_NEVER.search(p) or p in SKIP_DIRS for p in path.parts[:-1]):
        return None
    if _CHANGELOG.match(name) or path.parent.name == "RelNotes":
        return "changelog"
    if name.lower().startswith("readme"):
        return "readme"
    if package in SPEC_PACKAGES and (name.endswith(".txt") or "spec" in name.lower()):
        return "spec"
    return "docs" if _TEXT.search(name) else None


class Digest:
    """SHA-256 of the files read per package (path and bytes), for ``makeup.json``."""

    def __init__(self) -> None:
        self.hashes: dict[str, hashlib._Hash] = {}
        self.files: dict[str, int] = {}

    def add(self, package: str, rel: str, data: str | bytes) -> None:
        h = self.hashes.setdefault(package, hashlib.sha256())
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        h.update(rel.encode() + b"\0" + data + b"\0")
        self.files[package] = self.files.get(package, 0) + 1

    def record(self, package: str) -> dict[str, object]:
        h = self.hashes.get(package)
        return {"files": self.files.get(package, 0),
                "sha256": h.hexdigest() if h is not None else None}


def debian_documents(sources: Sources, digest: Digest) -> Iterator[SourceDoc]:
    """The documents of the pinned Debian packages, package by package, in sorted order."""
    for package in sorted(sources.debian):
        roots = [(sources.doc_root / package, "")]
        if package == "base-files":
            roots.append((sources.licenses, "common-licenses/"))
        for root, prefix in roots:
            for p in _walk(root):
                rel = prefix + p.relative_to(root).as_posix()
                kind = "license" if prefix else file_kind(p.relative_to(root), package)
                if kind is None:
                    continue
                text = read_text(p)
                digest.add(package, rel, text)
                yield SourceDoc(kind, package, rel, text)


def python_documents(sources: Sources, installed: Mapping[str, tuple[str, Path]],
                     digest: Digest) -> Iterator[SourceDoc]:
    """The PyPI description, license files and shipped Markdown/reST documents of each pinned
    distribution, in sorted order."""
    for dist in sorted(sources.python):
        info = installed[dist][1]
        body = metadata_body((info / "METADATA").read_bytes())
        if body.strip():
            digest.add(dist, "METADATA", body)
            yield SourceDoc("pypi_description", dist, "METADATA", body)
        for p in _walk(info):
            if _LICENSE.match(p.name) and p.suffix.lower() in ("", ".txt", ".md", ".rst"):
                rel = p.relative_to(info).as_posix()
                text = read_text(p)
                digest.add(dist, rel, text)
                yield SourceDoc("license", dist, rel, text)
        for root in sources.python[dist][1]:
            for p in _walk(sources.site / root):
                rel = p.relative_to(sources.site).as_posix()
                kind = file_kind(Path(rel), dist) if p.suffix.lower() in (".md", ".rst") \
                    else None
                if kind is not None:
                    text = read_text(p)
                    digest.add(dist, rel, text)
                    yield SourceDoc(kind, dist, rel, text)


def docstrings(sources: Sources, digest: Digest, *, min_words: int = 15,
               max_query_words: int = 40) -> Iterator[tuple[str, str, Entry]]:
    """``(distribution, file, Entry)`` of every docstring pair of the pinned libraries (the
    example set's parser: summary line = query, rest = passage), in sorted order."""
    for dist in sorted(sources.python):
        for root in sources.python[dist][1]:
            for p in _walk(sources.site / root):
                if p.suffix != ".py" or p.name.startswith(("test_", "conftest")):
                    continue
                rel = p.relative_to(sources.site).as_posix()
                module = rel[:-3].replace("/", ".").removesuffix(".__init__")
                data = p.read_bytes()
                digest.add(dist, rel, data)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        tree = ast.parse(data, filename=str(p))
                except (SyntaxError, ValueError):
                    continue
                for e in _entries(tree, module, min_words, max_query_words):
                    yield dist, rel, e
