"""The documentation site and the pinned environment.

Fast: ``constraints.txt`` pins the numerical stack exactly, ``make`` installs from it, every
run's provenance records it (SHA-256 and any package installed at another version), and
every public module has an API page. Slow: the whole site builds with warnings as errors,
executing the tutorials (what ``make docs`` runs).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import pathlib
import pkgutil
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import molrg
from molrg.study import provenance
from molrg.study.results import CONSTRAINTS_FILE, constraints_record, read_constraints

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_constraints_pin_the_numerical_stack_exactly():
    assert pathlib.Path(CONSTRAINTS_FILE) == ROOT / "constraints.txt"
    text = (ROOT / "constraints.txt").read_text()
    for name in ("jax", "jaxlib", "optax", "numpy", "scipy", "matplotlib", "pytest"):
        assert re.search(rf"^{name}==\d[\w.]*$", text, re.M), f"constraints.txt must pin {name}==X"
    assert not re.search(r"^[^#\s].*(>=|<=|~=|>|<|@)", text, re.M), "only exact pins (name==version)"
    pins = read_constraints(ROOT / "constraints.txt")
    assert pins["jax"] == pins["jaxlib"], "jax and jaxlib move together"
    assert "molrg" not in pins, "the package itself is installed editable, not pinned"


def test_every_declared_dependency_is_pinned():
    """A dependency added to pyproject.toml without re-freezing would install unpinned."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in ("test", "docs"):
        declared += project["optional-dependencies"][extra]
    pins = read_constraints(ROOT / "constraints.txt")
    names = {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", d).group()).lower() for d in declared}
    unpinned = sorted(names - set(pins))
    assert not unpinned, (f"not in constraints.txt: {unpinned}; regenerate it from the venv that measured the "
                          "numbers (pip freeze --exclude-editable) or run make upgrade-env")


def test_make_installs_from_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.M)
    assert stamp and "$(CONSTRAINTS)" in stamp.group(1), "the venv must rebuild when the pins change"
    assert "CONSTRAINTS := constraints.txt" in makefile
    installs = re.findall(r"pip install .*-e '\.\[(\w+)\]'", makefile)
    assert installs and all("-c $(CONSTRAINTS)" in line
                            for line in re.findall(r"^\t\$\(PY\) -m pip install .*-e .*$", makefile, re.M))
    assert "upgrade-env:" in makefile and "docs:" in makefile


def test_provenance_records_the_pinned_environment():
    record = provenance()["constraints"]
    digest = hashlib.sha256((ROOT / "constraints.txt").read_bytes()).hexdigest()
    assert record["file"] == "constraints.txt" and record["sha256"] == digest
    pins = read_constraints(ROOT / "constraints.txt")
    assert record["pinned"] == len(pins)
    # `differs` is exactly the pinned packages installed at another version
    expected = {}
    for name, version in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version:
            expected[name] = {"pinned": version, "installed": installed}
    assert record["differs"] == expected


def test_constraints_record_reports_differences_and_absence(tmp_path):
    path = tmp_path / "pins.txt"
    path.write_text("# a comment\nNumPy==0.0.1\nml_dtypes==0.0.2 ; python_version >= '3'\n"
                    f"jax=={importlib.metadata.version('jax')}\nno-such-package-xyz==1.0\n")
    record = constraints_record(str(path))
    assert record["pinned"] == 4 and record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["differs"] == {
        "numpy": {"pinned": "0.0.1", "installed": np.__version__},
        "ml-dtypes": {"pinned": "0.0.2", "installed": importlib.metadata.version("ml_dtypes")},
    }  # jax matches its pin; a package that is not installed is not a difference
    assert constraints_record(str(tmp_path / "missing.txt")) is None


def _public_modules() -> set[str]:
    out = {"molrg"}
    for info in pkgutil.walk_packages(molrg.__path__, "molrg."):
        if not any(part.startswith("_") for part in info.name.split(".")) and info.name != "molrg.cli":
            out.add(info.name)
    return out


def test_every_public_module_has_an_api_page():
    from molrg.experiments import MODULES
    documented = {m.__name__ for m in MODULES}  # docs/api/experiments.rst, generated from MODULES
    for page in (DOCS / "api").glob("*.rst"):
        documented |= set(re.findall(r"^\.\. automodule:: ([\w.]+)\s*$", page.read_text(), re.M))
    missing = sorted(_public_modules() - documented)
    assert not missing, f"modules without an API page (add an automodule to docs/api): {missing}"
    stale = sorted(documented - _public_modules())
    assert not stale, f"API pages for modules that do not exist: {stale}"


def test_every_public_core_name_has_a_docstring():
    """The API reference lists documented names only: an undocumented core function would be
    missing from it (the experiment modules' run/plot follow the protocol documented in
    :mod:`molrg.experiments`, and their configs are on the catalogue page)."""
    import importlib
    import inspect
    missing = []
    for name in sorted(_public_modules()):
        if name.startswith(("molrg.experiments.", "molrg.study.")):
            continue
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", None) or [a for a in vars(module) if not a.startswith("_")]:
            obj = getattr(module, attr)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != name:
                continue
            doc = (obj.__doc__ or "").strip()
            if not doc or (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")):  # dataclass default
                missing.append(f"{name}.{attr}")
    assert not missing, f"public names without a docstring: {missing}"


def test_catalogue_lists_every_experiment_and_sweep():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import molrg_catalogue
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    from molrg.experiments import EXPERIMENTS, SWEEPABLES
    text = molrg_catalogue.catalogue_markdown()
    for name, exp in EXPERIMENTS.items():
        assert f"`molrg run {name} " in text and exp.summary[1:] in text
        for field in exp.config.__dataclass_fields__:
            assert f"| `{field}` |" in text
    for name in SWEEPABLES:
        assert f"Sweep `{name}`" in text
    assert "`interior_peak`" in text  # a claim name, read from the claims function's source


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_docs_build_strict_with_executed_tutorials(tmp_path):
    """What ``make docs`` runs: any warning, broken reference or tutorial error fails it."""
    missing = [m for m in ("sphinx", "myst_nb", "ipykernel", "furo") if importlib.util.find_spec(m) is None]
    assert not missing, (f"the docs extra is not installed ({missing}): `make test-all` installs it, "
                         "or pip install -c constraints.txt -e '.[docs]'")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
                           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"docs build failed after {seconds:.0f}s:\n{proc.stdout[-5000:]}\n{proc.stderr[-10000:]}"
    html = tmp_path / "html"
    for page in ("index", "theory", "experiments", "environment", "api/index", "api/theory",
                 "tutorials/snr_peak", "tutorials/own_sweep"):
        assert (html / f"{page}.html").is_file(), page
    for tutorial in ("snr_peak", "own_sweep"):
        text = (html / "tutorials" / f"{tutorial}.html").read_text()
        assert "<img" in text, f"{tutorial}: its plot is missing"
    api = (html / "api" / "theory.html").read_text()
    assert 'id="molrg.theory.exact_peak_sigma_quadrature"' in api
    assert "experiments/mechanism.toml" in (html / "experiments.html").read_text()  # the generated catalogue
