"""Configs as data: frozen dataclasses of defaults, ``--set key=value`` overrides, config files.

An experiment's or study's config is a frozen dataclass whose fields have type hints and
defaults (the paper-scale settings); an optional ``validate()`` raises ``ValueError`` naming
the field at fault. Overrides arrive as strings (``--set``, ``--grid``, TOML files) and are
parsed by the field's type here, before any work.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

import numpy as np


def parse_value(text: str, typ, key: str, flag: str = "--set"):
    """``text`` read as a value of type ``typ`` (int, float, bool, str, tuples, optionals)."""
    origin = typing.get_origin(typ)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if text.lower() in ("none", "null") and len(args) < len(typing.get_args(typ)):
            return None
        return parse_value(text, args[0], key, flag)
    if origin in (tuple, list):
        (elem, *rest) = typing.get_args(typ) or (str,)
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
        return tuple(parse_value(p.strip(), elem, key, flag) for p in parts)
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        return typ(text)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} {key}: cannot read {text!r} as {getattr(typ, '__name__', typ)}") from None


def apply_overrides(cfg, overrides: dict[str, Any]):
    """A copy of ``cfg`` with ``overrides`` (strings are parsed by the field's type), validated."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"--set {key}: unknown config key; known keys: {', '.join(sorted(names))}")
        changes[key] = parse_value(value, hints[key], key) if isinstance(value, str) else value
    new = dataclasses.replace(cfg, **changes)
    check = getattr(new, "validate", None)
    if check is not None:
        check()
    return new


def parse_sets(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` (the ``--set`` flags) as a dict."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def parse_grids(items: list[str]) -> dict[str, list[str]]:
    """``["k=v1,v2,...", "k=lo:hi:num", "k=lo:hi:numg"]`` (the ``--grid`` flags) as a dict."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--grid: expected key=v1,v2,..., got {item!r}")
        k, v = item.split("=", 1)
        vals = [s.strip() for s in v.split(",") if s.strip()]
        if ":" in v and len(vals) == 1 and v.count(":") == 2:  # lo:hi:num (geometric if 'g' suffix)
            lo, hi, num = v.split(":")
            geo = num.endswith("g")
            num_i = int(num.rstrip("g"))
            arr = np.geomspace(float(lo), float(hi), num_i) if geo else np.linspace(float(lo), float(hi), num_i)
            vals = [repr(float(a)) for a in arr]
        out[k.strip()] = vals
    return out


def _as_text(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def load_config_file(path: str, *, study: str | None = None) -> tuple[dict, dict]:
    """``(sets, grids)`` from a TOML or JSON config file, as strings for the parsers above.

    Layout (``experiments/NAME.toml``): a ``[run]`` table of config values for ``molrg run``,
    and for each sweepable study a ``[sweeps.STUDY]`` table with ``set`` and ``grid`` tables.
    With ``study`` given, the sweep's tables are read; otherwise the ``[run]`` table.
    """
    if path.endswith(".toml"):
        import tomllib
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    else:
        with open(path) as fh:
            data = json.load(fh)
    unknown = set(data) - {"run", "sweeps"}
    if unknown:
        raise ValueError(f"--config {path}: unknown sections {sorted(unknown)}; use [run] and [sweeps.STUDY]")
    if study is None:
        return {k: _as_text(v) for k, v in data.get("run", {}).items()}, {}
    sweeps = data.get("sweeps", {})
    if study not in sweeps:
        raise ValueError(f"--config {path}: no [sweeps.{study}] table; it has {sorted(sweeps) or 'none'}")
    table = sweeps[study]
    unknown = set(table) - {"set", "grid"}
    if unknown:
        raise ValueError(f"--config {path}: [sweeps.{study}] has unknown keys {sorted(unknown)}; use set and grid")
    grid = {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in table.get("grid", {}).items()}
    sets = {k: _as_text(v) for k, v in table.get("set", {}).items()}
    return sets, grid
