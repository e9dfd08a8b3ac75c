"""Config files: big_vision-style Python configs (``file.py[:arg]`` with ``get_config(arg)``
returning an ``ml_collections.ConfigDict`` or a dict) or plain JSON objects."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any


def load_config(spec: str | Path) -> dict[str, Any]:
    """The settings dict of ``spec``: ``path.json``, or ``path.py`` / ``path.py:arg``."""
    text = str(spec)
    path_text, _, arg = text.partition(":") if ".py:" in text else (text, "", "")
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"config {path}: no such file")
    if path.suffix == ".json":
        try:
            loaded = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config {path}, line {e.lineno}: malformed JSON ({e.msg})") from None
    elif path.suffix == ".py":
        mod_spec = importlib.util.spec_from_file_location(f"_mrr_config_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ValueError(f"config {path}: defines no get_config()")
        loaded = module.get_config(arg) if arg else module.get_config()
        if hasattr(loaded, "to_dict"):
            loaded = loaded.to_dict()
    else:
        raise ValueError(f"config {path}: expected a .py or .json file")
    if not isinstance(loaded, dict):
        raise ValueError(f"config {path}: expected a mapping of settings, got "
                         f"{type(loaded).__name__}")
    return loaded


def load_config_dict(spec: str | Path, overrides: list[str] = ()):
    """An ``ml_collections.ConfigDict`` from a Python config, locked, with big_vision-style
    overrides ``["a.b=1", "c=(1, 2)"]`` applied: values are Python literals (else strings), a
    key that does not exist is an error (a typo never silently does nothing), and a value of
    the wrong type is an error naming the key."""
    import ast

    import ml_collections

    text = str(spec)
    path_text, _, arg = text.partition(":") if ".py:" in text else (text, "", "")
    path = Path(path_text)
    if path.suffix != ".py" or not path.is_file():
        raise FileNotFoundError(f"config {path}: expected an existing .py file with get_config")
    mod_spec = importlib.util.spec_from_file_location(f"_mrr_config_{path.stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    cfg = module.get_config(arg) if arg else module.get_config()
    if not isinstance(cfg, ml_collections.ConfigDict):
        cfg = ml_collections.ConfigDict(cfg)
    cfg.lock()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        *parents, leaf = key.split(".")
        node = cfg
        for i, name in enumerate(parents):
            if name not in node:
                raise KeyError(f"override {item!r}: no key {'.'.join(parents[:i + 1])!r} in "
                               f"{path}")
            node = node[name]
        if leaf not in node:
            raise KeyError(f"override {item!r}: no key {key!r} in {path} (known here: "
                           f"{', '.join(sorted(node.keys()))})")
        old = node[leaf]
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        if old is not None and isinstance(value, str) and not isinstance(old, str):
            raise TypeError(f"override {item!r}: {key} is a {type(old).__name__}, got the "
                            f"string {raw!r}")
        try:
            node[leaf] = value
        except TypeError as e:
            raise TypeError(f"override {item!r}: {e}") from None
    return cfg
