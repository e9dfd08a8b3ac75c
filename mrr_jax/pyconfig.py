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
