"""Sphinx extension: pages generated from the code, so they cannot drift from it.

* The experiment catalogue: at ``builder-inited`` (before any page is read) it writes
  ``docs/_generated/catalogue.md`` from the registry :mod:`molrg.experiments`: every
  experiment's name, summary, paper reference, claim names (as written in its ``claims``
  function), config fields with their full-scale defaults, quick values and meanings, and every
  sweepable study with its static and numeric fields. ``docs/experiments.md`` includes it.
* The API page of the experiment modules: ``docs/_generated/experiment_modules.rst``, one
  ``automodule`` per module of :data:`molrg.experiments.MODULES`, included by
  ``docs/api/experiments.rst``.
* ``.. molrg-reexports:: PACKAGE``: the names a package re-exports (its ``__all__``), each
  linked to the module that defines and documents it (``docs/api/molrg.rst``).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import os
import textwrap


from molrg import experiments
from molrg.study.config import field_docs


def _code(value) -> str:
    text = repr(value)
    if len(text) > 70:
        text = text[:67] + "..."
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _claim_names(fn) -> list[str]:
    """First arguments of the ``Claim(...)`` calls in ``fn``'s source, as written.

    A literal name is shown as is; the formatted parts of an f-string as ``...``; a name
    held in a variable is skipped (the page says how many).
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    names, hidden = [], 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Claim" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.append(arg.value)
            elif isinstance(arg, ast.JoinedStr):
                names.append("".join(v.value if isinstance(v, ast.Constant) else "..." for v in arg.values))
            else:
                hidden += 1
    if hidden:
        names.append(f"(and {hidden} more, named at run time)")
    return names


def _config_table(config, quick: dict) -> list[str]:
    meaning = field_docs(type(config))  # the class's Attributes: section or the field's comment
    rows = ["| field | full-scale default | `--quick` | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(config):
        q = _code(quick[f.name]) if f.name in quick else ""
        text = meaning.get(f.name, "").replace("|", "\\|")
        rows.append(f"| `{f.name}` | {_code(getattr(config, f.name))} | {q} | {text} |")
    return rows


def catalogue_markdown() -> str:
    """The catalogue as MyST Markdown (one section per experiment module)."""
    out: list[str] = []
    for module in experiments.MODULES:
        short = module.__name__.rsplit(".", 1)[1]
        exp = module.EXPERIMENT
        out += [f"## `{short}`", ""]
        if exp is not None:
            out += [exp.summary[:1].upper() + exp.summary[1:] + ".", ""]
            if exp.paper:
                out += [f"- Reproduces: {exp.paper}"]
            out += [f"- Run: `molrg run {exp.name} [--quick] [--set key=value]`, or "
                    f"`molrg run {exp.name} --config experiments/{short}.toml`",
                    f"- Code: {{py:mod}}`{module.__name__}`"]
            if exp.claims is not None:
                names = _claim_names(exp.claims)
                out += [f"- Claims (`molrg check --only {exp.name}`): "
                        + ", ".join(f"`{n}`" if not n.startswith("(") else n for n in names)]
            out += ["", f"Config `{type(exp.config).__name__}`:", ""]
            out += _config_table(exp.config, exp.quick)
            out += [""]
        else:
            out += [f"Sweep-only module ({{py:mod}}`{module.__name__}`).", ""]
        for sw in module.SWEEPABLES:
            out += [f"Sweep `{sw.name}`: {sw.summary}. "
                    f"`molrg sweep {sw.name} --config experiments/{short}.toml`; "
                    f"static (one compile each): {', '.join(f'`{s}`' for s in sw.static)}; "
                    f"numeric (vmapped): {', '.join(f'`{s}`' for s in sw.numeric)}.", ""]
            out += _config_table(sw.config, {})
            out += [""]
    return "\n".join(out) + "\n"


def experiment_modules_rst() -> str:
    """One section per experiment module (its automodule), in the catalogue's order."""
    out: list[str] = []
    for module in experiments.MODULES:
        title = f"``{module.__name__}``"
        out += [title, "-" * len(title), "", f".. automodule:: {module.__name__}", ""]
    return "\n".join(out)


def _write(app) -> None:
    folder = os.path.join(app.srcdir, "_generated")
    os.makedirs(folder, exist_ok=True)
    for name, text in (("catalogue.md", catalogue_markdown()),
                       ("experiment_modules.rst", experiment_modules_rst())):
        path = os.path.join(folder, name)
        old = None
        if os.path.exists(path):
            with open(path) as fh:
                old = fh.read()
        if text != old:  # rewrite only on change: Sphinx rebuilds pages whose includes changed
            with open(path, "w") as fh:
                fh.write(text)


def _reexport_lines(package: str) -> list[str]:
    """An RST bullet list: each name of ``package.__all__`` with the module that defines it."""
    pkg = importlib.import_module(package)
    lines = []
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        home = getattr(obj, "__module__", None)
        if inspect.ismodule(obj):
            lines.append(f"* ``{name}``: :py:mod:`{obj.__name__}`")
        elif home == package:
            lines.append(f"* :py:obj:`{package}.{name}` (below)")
        elif home and hasattr(obj, "__qualname__"):
            lines.append(f"* ``{package}.{name}``: :py:obj:`{home}.{obj.__qualname__}`")
        else:
            lines.append(f"* ``{package}.{name}``")
    return lines


def _reexports_directive():
    """``.. molrg-reexports:: PACKAGE``: the names a package re-exports, linked to their homes.

    Built when Sphinx loads the extension, so the catalogue functions above import without it
    (the fast tests check the catalogue text in the test environment, which has no Sphinx).
    """
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class Reexports(SphinxDirective):
        required_arguments = 1

        def run(self):
            container = nodes.container()
            lines = StringList(_reexport_lines(self.arguments[0]), source="molrg-reexports")
            self.state.nested_parse(lines, self.content_offset, container)
            return container.children

    return Reexports


def setup(app):
    app.connect("builder-inited", _write)
    app.add_directive("molrg-reexports", _reexports_directive())
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
