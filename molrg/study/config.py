"""Configs as data: frozen dataclasses of defaults, ``--set key=value`` overrides, config files.

An experiment's or study's config is a frozen dataclass whose fields have type hints and
defaults (the paper-scale settings); an optional ``validate()`` raises ``ValueError`` naming
the field at fault. Overrides arrive as strings (``--set``, ``--grid``, TOML files) and are
parsed by the field's type here, before any work. Each field's meaning is its entry in the
class docstring's ``Attributes:`` section or the comment on its line
(``num_train: int = 2000  # training samples``); :func:`field_docs` reads them and
:func:`describe_config` prints them (``molrg run NAME --show-config``).
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import math
import re
import textwrap
import tokenize
import types
import typing
from typing import Any

import numpy as np


def _is_union(typ) -> bool:
    origin = typing.get_origin(typ)
    return origin is typing.Union or origin is types.UnionType


def parse_value(text: str, typ, key: str, flag: str = "--set"):
    """``text`` read as a value of type ``typ`` (int, float, bool, str, tuples, optionals).

    Floats must be finite (``nan``/``inf`` name the key in a ``ValueError``); an int field
    also reads an integral float (``3.0``, as ``--grid seed=0:7:8`` writes it); a tuple is
    comma-separated and an empty text is the empty tuple.
    """
    if _is_union(typ):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if text.lower() in ("none", "null") and len(args) < len(typing.get_args(typ)):
            return None
        return parse_value(text, args[0], key, flag)
    origin = typing.get_origin(typ)
    if origin in (tuple, list):
        (elem, *rest) = typing.get_args(typ) or (str,)
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
        return tuple(parse_value(p.strip(), elem, key, flag) for p in parts)
    name = getattr(typ, "__name__", typ)
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            try:
                return int(text)
            except ValueError:
                number = float(text)  # "3.0" or "1e3": an int only if integral
                if not number.is_integer():
                    raise
                return int(number)
        if typ is float:
            number = float(text)
        else:
            return typ(text)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{flag} {key}: cannot read {text!r} as {name}") from None
    if not math.isfinite(number):
        raise ValueError(f"{flag} {key}: must be a finite number; got {number!r}")
    return number


def _check_finite(key: str, value, flag: str = "--set") -> None:
    """A non-string override (QUICK dicts, TOML numbers, library callers) must be finite too."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{flag} {key}: must be a finite number; got {v!r}")


def apply_overrides(cfg, overrides: dict[str, Any]):
    """A copy of ``cfg`` with ``overrides`` (strings are parsed by the field's type), validated."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"--set {key}: unknown config key; known keys: {', '.join(sorted(names))} "
                             f"(--show-config lists them with types, defaults and meanings)")
        if isinstance(value, str):
            changes[key] = parse_value(value, hints[key], key)
        else:
            _check_finite(key, value)
            changes[key] = value
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
        if not k.strip():
            raise ValueError(f"--set: expected key=value, got {item!r} (no key)")
        out[k.strip()] = v.strip()
    return out


def _range_values(key: str, text: str) -> list[str]:
    """``lo:hi:num`` (evenly spaced) or ``lo:hi:numg`` (geometric) as value texts."""
    rule = f"--grid {key}: {text!r} must be lo:hi:num or lo:hi:numg (geometric)"
    lo_text, hi_text, num_text = (s.strip() for s in text.split(":"))
    geo = num_text.endswith("g")
    try:
        lo, hi = float(lo_text), float(hi_text)
        num = int(num_text[:-1] if geo else num_text)
    except ValueError:
        raise ValueError(f"{rule}, lo and hi numbers, num a whole number") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{rule}; lo and hi must be finite")
    if num < 1:
        raise ValueError(f"{rule}; num must be >= 1, got {num}")
    if geo and not (lo * hi > 0):
        raise ValueError(f"{rule}; a geometric grid needs lo and hi nonzero and of one sign")
    arr = np.geomspace(lo, hi, num) if geo else np.linspace(lo, hi, num)
    return [repr(float(a)) for a in arr]


def parse_grids(items: list[str]) -> dict[str, list[str]]:
    """``["k=v1,v2,...", "k=lo:hi:num", "k=lo:hi:numg"]`` (the ``--grid`` flags) as a dict.

    A value written twice is kept once (a point is computed once); a key given in two
    flags, a missing key and a malformed range are errors naming ``--grid``.
    """
    out: dict[str, list[str]] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--grid: expected key=v1,v2,..., got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        if not k:
            raise ValueError(f"--grid: expected key=v1,v2,..., got {item!r} (no key)")
        if k in out:
            raise ValueError(f"--grid {k}: given twice; put every value in one --grid {k}=v1,v2,...")
        vals = [s.strip() for s in v.split(",") if s.strip()]
        if ":" in v:
            if len(vals) != 1 or v.count(":") != 2:
                raise ValueError(f"--grid {k}: {v!r} must be lo:hi:num or lo:hi:numg (geometric), "
                                 f"or a list v1,v2,...")
            vals = _range_values(k, v)
        out[k] = list(dict.fromkeys(vals))
    return out


def _as_text(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def _scalar_values(path: str, where: str, table) -> None:
    """Config values must be scalars or lists of scalars (a nested table is a typo)."""
    if not isinstance(table, dict):
        raise ValueError(f"--config {path}: {where} must be a table of key = value; got {table!r}")
    for k, v in table.items():
        items = v if isinstance(v, list) else [v]
        if any(isinstance(x, (dict, list)) for x in items):
            raise ValueError(f"--config {path}: {where} {k}: expected a value or a list of values; got {v!r}")


def load_config_file(path: str, *, study: str | None = None) -> tuple[dict, dict]:
    """``(sets, grids)`` from a TOML or JSON config file, as strings for the parsers above.

    Layout (``experiments/NAME.toml``): a ``[run]`` table of config values for ``molrg run``,
    and for each sweepable study a ``[sweeps.STUDY]`` table with ``set`` and ``grid`` tables.
    With ``study`` given, the sweep's tables are read; otherwise the ``[run]`` table.
    A missing or unreadable file and a malformed layout raise ``ValueError`` naming ``--config``.
    """
    fmt = "TOML" if str(path).endswith(".toml") else "JSON"
    try:
        if fmt == "TOML":
            import tomllib
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        else:
            with open(path) as fh:
                data = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"--config: no such file {path!r}") from None
    except IsADirectoryError:
        raise ValueError(f"--config: {path!r} is a folder, not a file") from None
    except OSError as exc:
        raise ValueError(f"--config: cannot read {path!r} ({exc.strerror or exc})") from None
    except ValueError as exc:  # TOMLDecodeError, JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"--config {path}: not valid {fmt} ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a table with [run] and [sweeps.STUDY]; got {type(data).__name__}")
    unknown = set(data) - {"run", "sweeps"}
    if unknown:
        raise ValueError(f"--config {path}: unknown sections {sorted(unknown)}; use [run] and [sweeps.STUDY]")
    if study is None:
        run = data.get("run", {})
        _scalar_values(path, "[run]", run)
        return {k: _as_text(v) for k, v in run.items()}, {}
    sweeps = data.get("sweeps", {})
    if not isinstance(sweeps, dict):
        raise ValueError(f"--config {path}: sweeps must be tables [sweeps.STUDY]; got {sweeps!r}")
    if study not in sweeps:
        raise ValueError(f"--config {path}: no [sweeps.{study}] table; it has {sorted(sweeps) or 'none'}")
    table = sweeps[study]
    if not isinstance(table, dict):
        raise ValueError(f"--config {path}: [sweeps.{study}] must be a table with set and grid tables; got {table!r}")
    unknown = set(table) - {"set", "grid"}
    if unknown:
        raise ValueError(f"--config {path}: [sweeps.{study}] has unknown keys {sorted(unknown)}; use set and grid")
    for part in ("set", "grid"):
        _scalar_values(path, f"[sweeps.{study}.{part}]", table.get(part, {}))
    grid = {k: list(dict.fromkeys(str(x) for x in (v if isinstance(v, list) else [v])))
            for k, v in table.get("grid", {}).items()}
    sets = {k: _as_text(v) for k, v in table.get("set", {}).items()}
    return sets, grid


# ---------------------------------------------------------------------------------------------
# What each field means: --show-config

_ENTRY = re.compile(r"^([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _docstring_attributes(doc: str, fields: set[str]) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style docstring: ``{name: one line}``.

    An entry may name several fields (``n, K, d: the mixture``); its continuation lines
    (indented deeper) are joined into one line; ``a: one; b: another`` on one line are two
    entries when ``b`` is one of ``fields``.
    """
    out = _attribute_entries(doc)
    for name, text in list(out.items()):
        parts = re.split(r";\s*([A-Za-z_]\w*)\s*:\s*", text)
        if len(parts) > 1 and all(p in fields for p in parts[1::2]):
            out[name] = parts[0].strip()
            for other, meaning in zip(parts[1::2], parts[2::2]):
                out.setdefault(other, meaning.strip())
    return out


def _attribute_entries(doc: str) -> dict[str, str]:
    lines = doc.splitlines()
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        if line.strip() == "Attributes:":
            head = len(line) - len(line.lstrip())
            break
    else:
        return out
    entry_indent, names = None, []
    for line in lines[i + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= head:
            break
        if entry_indent is None:
            entry_indent = indent
        m = _ENTRY.match(line.strip()) if indent == entry_indent else None
        if m:
            names = [n.strip() for n in m.group(1).split(",")]
            for n in names:
                out[n] = m.group(2).strip()
        elif names:
            for n in names:
                out[n] = (out[n] + " " + line.strip()).strip()
    return out


def _line_comments(source: str, names: set[str]) -> dict[str, str]:
    """``{field: comment}`` for fields of the class body whose statement carries a comment."""
    out: dict[str, str] = {}
    depth, line = 0, []
    for tok in tokenize.generate_tokens(io.StringIO(textwrap.dedent(source)).readline):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NL and all(t.type == tokenize.COMMENT for t in line):
            line = []  # a blank or comment-only line
        elif tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if (depth == 1 and len(line) > 1 and line[0].type == tokenize.NAME and line[0].string in names
                    and line[1].string == ":"):
                comment = next((t.string for t in line if t.type == tokenize.COMMENT), "")
                if comment.lstrip("#").strip():
                    out[line[0].string] = comment.lstrip("#").strip()
            line = []
        elif tok.type != tokenize.NL:
            line.append(tok)
    return out


def field_docs(cls) -> dict[str, str]:
    """What each field of the config dataclass ``cls`` means, one line each ("" if undocumented).

    The class docstring's ``Attributes:`` entry (the designated documentation) wins; else
    the comment on the field's line. reST double backquotes are dropped.
    """
    cls = cls if isinstance(cls, type) else type(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    try:
        comments = _line_comments(inspect.getsource(cls), set(names))
    except (OSError, TypeError, tokenize.TokenError, IndentationError):
        comments = {}
    attributes = _docstring_attributes(cls.__doc__ or "", set(names))
    return {n: (attributes.get(n) or comments.get(n, "")).replace("``", "") for n in names}


def type_name(typ) -> str:
    """A field's type as a reader writes it: ``int``, ``tuple[float, ...]``, ``float | None``."""
    if typ is type(None):
        return "None"
    if isinstance(typ, type) and not typing.get_args(typ):
        return typ.__name__
    if _is_union(typ):
        return " | ".join(type_name(a) for a in typing.get_args(typ))
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is not None and args:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', origin)}[{inner}]"
    return str(typ).replace("typing.", "")


def format_value(value) -> str:
    """A value as ``--set KEY=VALUE`` reads it back (lists comma-separated; ``(empty)`` for empty)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value) if value else "(empty)"
    if isinstance(value, str) and not value:
        return "(empty)"
    return repr(value) if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[str]], cap: int = 28) -> list[str]:
    """Rows aligned in columns (a column wider than ``cap`` only pushes its own line right)."""
    widths = [min(cap, max(len(r[i]) for r in [header] + rows)) for i in range(len(header) - 1)]
    out = []
    for r in [header] + rows:
        cells = [f"{c:<{w}}" for c, w in zip(r, widths)] + [r[-1]]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def describe_config(cfg, columns: dict[str, dict[str, Any]] | None = None) -> str:
    """Every field of ``cfg``: key, type, default, extra ``columns`` and its meaning, one line each.

    Args:
      cfg: a config dataclass instance holding the defaults.
      columns: ``{column title: {field: value}}`` shown after the default (blank where absent).
    """
    hints = typing.get_type_hints(type(cfg))
    docs = field_docs(type(cfg))
    columns = columns or {}
    header = ["key", "type", "default", *columns, "meaning"]
    rows = []
    for f in dataclasses.fields(cfg):
        extra = [format_value(col[f.name]) if f.name in col else "" for col in columns.values()]
        rows.append([f.name, type_name(hints[f.name]), format_value(getattr(cfg, f.name)), *extra,
                     docs[f.name]])
    return "\n".join(_table(header, rows))
