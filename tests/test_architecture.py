"""The package's layers, read from the source: no import cycle (imports inside functions
included), and data flows one way: core -> study -> experiments -> cli."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "molrg"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(name: str) -> str:
    """The molrg module an import of ``name`` loads (a package's ``__init__`` for packages)."""
    while name not in MODULES:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str) -> set[str]:
    """Every molrg module ``module`` imports, at any depth of its code (functions included)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    out = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out |= {_resolve(n) for n in names if n == "molrg" or n.startswith("molrg.")}
    out.discard(module)
    return out


#: The one import up the layers: ``molrg.load`` (a function in the package's ``__init__``)
#: imports the study layer's table loader when it is called, so ``import molrg`` still loads
#: the core only (checked by test_the_one_upward_import_is_lazy).
LAZY_UP = {("molrg", "molrg.study.tables")}

GRAPH = {m: _imports(m) - {n for (a, n) in LAZY_UP if a == m} for m in MODULES}


def _layer(module: str) -> int:
    if module == "molrg.cli":
        return 3
    if module.startswith("molrg.experiments"):
        return 2
    if module.startswith("molrg.study"):
        return 1
    return 0  # the core, and the package's __init__ (which re-exports core names only)


def test_no_import_cycle():
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])


def test_layers_flow_one_way():
    bad = [(m, n) for m, deps in GRAPH.items() for n in deps if _layer(n) > _layer(m)]
    assert not bad, f"a lower layer imports a higher one: {bad}"


def test_the_one_upward_import_is_lazy():
    """Each LAZY_UP import happens inside a function only, never at the module's top level."""
    for module, target in LAZY_UP:
        tree = ast.parse(MODULES[module].read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        top_names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        top_names |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
        assert not any(t == target or t.startswith("molrg.study") for t in top_names), (module, target)
        assert target in _imports(module), f"{module} no longer imports {target}: drop it from LAZY_UP"


def test_no_experiment_imports_another():
    exps = [m for m in GRAPH if m.startswith("molrg.experiments.")]
    bad = [(m, n) for m in exps for n in GRAPH[m] if n.startswith("molrg.experiments") and n != m]
    assert not bad, f"experiment modules import each other: {bad}"


def test_every_experiment_module_is_listed_and_has_a_config_file():
    import molrg.experiments as catalogue

    listed = {m.__name__ for m in catalogue.MODULES}
    on_disk = {m for m in MODULES if m.startswith("molrg.experiments.")}
    assert listed == on_disk
    configs = ROOT.parent / "experiments"
    for m in catalogue.MODULES:
        assert (configs / f"{m.__name__.rsplit('.', 1)[1]}.toml").is_file(), m.__name__


def test_no_two_module_names_differ_by_one_letter():
    names = sorted({p.stem for p in ROOT.rglob("*.py") if p.stem != "__init__"})

    def one_edit(a, b):
        if abs(len(a) - len(b)) > 1 or a == b:
            return False
        if len(a) == len(b):
            return sum(x != y for x, y in zip(a, b)) == 1
        short, long = sorted((a, b), key=len)
        return any(long[:i] + long[i + 1:] == short for i in range(len(long)))

    close = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if one_edit(a, b)]
    assert not close, close


def test_config_files_hold_the_defaults_and_valid_sweeps():
    """experiments/NAME.toml: [run] is the experiment's default (full-scale) config exactly,
    and every [sweeps.STUDY] table expands into valid points of a study of that module."""
    import molrg.experiments as catalogue
    from molrg.study import apply_overrides, load_config_file
    from molrg.study.sweep import expand_grid

    configs = ROOT.parent / "experiments"
    for m in catalogue.MODULES:
        path = str(configs / f"{m.__name__.rsplit('.', 1)[1]}.toml")
        if m.EXPERIMENT is not None:
            sets, _ = load_config_file(path)
            assert apply_overrides(m.EXPERIMENT.config, sets) == m.EXPERIMENT.config, path
        for sw in m.SWEEPABLES:
            sets, grids = load_config_file(path, study=sw.name)
            points = expand_grid(sw, grids, sets)
            assert len(points) == len({repr(p) for p in points}) >= 1, (path, sw.name)
