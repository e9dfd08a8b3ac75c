"""Config files, one loader for every command: big_vision-style Python configs (``file.py[:arg]``
with ``get_config(arg)`` returning an ``ml_collections.ConfigDict`` or a dict) or plain JSON
objects, with ``key=value`` overrides.

    c = load_config("configs/tiny.py:vertical", ["train.steps=3", "optim.lr=1e-3"])

Anything wrong with a config is a :class:`ConfigError` (a ``ValueError``) whose message names
the file and, for an override, the key: a file that is missing or unreadable, a Python config
without ``get_config``, malformed JSON, an override without ``=``, a key that does not exist
(a typo never silently does nothing), a value of the wrong type.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and, for overrides, the key."""


def load_config(spec: str | Path, overrides: Sequence[str] = (), *,
                flag: str = "") -> ml_collections.ConfigDict:
    """The locked ``ConfigDict`` of ``spec`` (``path.json``, ``path.py`` or ``path.py:arg``)
    with ``overrides`` applied in order.

    An override is ``dotted.key=value``; the value is a Python literal (``3``, ``1e-4``,
    ``(1, 2)``, ``'text'``, ``None``), else the text itself. It must keep the setting's type,
    except that an int sets a float, a list sets a tuple and a tuple sets a list; a setting
    whose default is ``None`` takes any value. Use ``.to_dict()`` for a plain dict.

    An override's error is one plain line that starts with the override as the user typed it,
    ``flag`` (e.g. ``--config.``) + ``key=value``: ``--config.train.steps=2.5: expected an int,
    got 2.5``."""
    path, arg = _split_spec(spec)
    cfg = _read(path, arg)
    cfg.lock()
    for item in overrides:
        _apply(cfg, item, path, flag)
    return cfg


def _split_spec(spec: str | Path) -> tuple[Path, str]:
    text = str(spec)
    path_text, _, arg = text.partition(":") if ".py:" in text else (text, "", "")
    return Path(path_text), arg


def _read(path: Path, arg: str) -> ml_collections.ConfigDict:
    if not path.is_file():
        raise ConfigError(f"config {path}: no such file")
    if path.suffix not in (".json", ".py"):
        raise ConfigError(f"config {path}: expected a .py or .json file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config {path}: cannot be read ({getattr(e, 'strerror', None) or e})"
                          ) from None
    if path.suffix == ".json":
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config {path}, line {e.lineno}: malformed JSON ({e.msg})"
                              ) from None
    else:
        loaded = _call_get_config(path, arg)
    if isinstance(loaded, ml_collections.ConfigDict):
        return loaded
    if not isinstance(loaded, dict):
        raise ConfigError(f"config {path}: expected a mapping of settings, got "
                          f"{type(loaded).__name__}")
    return ml_collections.ConfigDict(loaded)


def _call_get_config(path: Path, arg: str) -> Any:
    mod_spec = importlib.util.spec_from_file_location(f"_mrr_config_{path.stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config {path}: defines no get_config()")
    try:
        return module.get_config(arg) if arg else module.get_config()
    except ConfigError:
        raise
    except ValueError as e:  # the config refused its ARG (e.g. an unknown stage)
        where = f"{path}:{arg}" if arg else str(path)
        raise ConfigError(f"config {where}: {e}") from e


def _apply(cfg: ml_collections.ConfigDict, item: str, path: Path, flag: str) -> None:
    """Sets one ``key=value`` override, checking the key and the value's type first."""
    key, sep, raw = item.partition("=")
    where = f"{flag}{item}"
    if not sep or not key:
        raise ConfigError(f"{where}: expected {flag}KEY=VALUE")
    *parents, leaf = key.split(".")
    node = cfg
    for i, name in enumerate(parents):
        group = ".".join(parents[:i + 1])
        if name not in node:
            raise ConfigError(f"{where}: no key {group} in {path} (known here: "
                              f"{', '.join(sorted(node.keys()))})")
        node = node[name]
        if not isinstance(node, ml_collections.ConfigDict):
            raise ConfigError(f"{where}: {group} is a setting, not a group of settings")
    if leaf not in node:
        raise ConfigError(f"{where}: no key {key} in {path} (known here: "
                          f"{', '.join(sorted(node.keys()))})")
    node[leaf] = _typed(where, key, node[leaf], _literal(raw), raw)


def _literal(raw: str) -> Any:
    """A Python literal, else the text itself."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _typed(where: str, key: str, old: Any, value: Any, raw: str) -> Any:
    """``value`` converted to the type of the setting's current value ``old``, or a
    ConfigError: ``{where}: expected an int, got 2.5`` (the override as typed, what the
    setting takes, the value as typed)."""
    if old is None:
        return value
    if isinstance(old, ml_collections.ConfigDict):
        raise ConfigError(f"{where}: {key} is a group of settings "
                          f"({', '.join(sorted(old.keys()))}); set them one by one")
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    elif isinstance(old, list) and isinstance(value, tuple):
        value = list(value)
    if isinstance(old, bool) or isinstance(value, bool):
        ok = isinstance(old, bool) and isinstance(value, bool)
    else:
        ok = isinstance(value, type(old))
    if ok:
        return value
    if isinstance(old, bool):
        want = "True or False"
    else:
        want = type(old).__name__
        want = f"{'an' if want[0] in 'aeiou' else 'a'} {want}"
    raise ConfigError(f"{where}: expected {want}, got {raw}")
