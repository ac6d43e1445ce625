"""Sphinx configuration of molrg's documentation (built by ``make docs``).

The build is strict: ``make docs`` runs ``sphinx-build -W --keep-going -E``, so any warning
(a broken docstring, a missing page, an unresolved toctree entry) fails it, and the
tutorials are MyST notebooks executed on every build (``nb_execution_mode = "force"``) with
``nb_execution_raise_on_error``, so a tutorial that raises fails it too.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))  # the checkout's molrg, installed or not

import molrg  # noqa: E402

project = "molrg"
author = "molrg authors"
copyright = "molrg authors"
release = version = molrg.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",
    "molrg_catalogue",  # docs/_ext: writes the experiment catalogue from molrg.experiments
]

source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# MyST: $...$ and $$...$$ math (docs/theory.md), ::: fences, automatic heading anchors.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Notebooks (docs/tutorials): executed on every build; an error fails it.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600
nb_merge_streams = True
# The kernels inherit this process's environment: draw figures inline into the pages even
# when the caller set a headless backend (tests/conftest.py sets MPLBACKEND=Agg).
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

# API reference from the Google-style docstrings.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

html_theme = "furo"
html_title = f"molrg {release}"
html_static_path: list[str] = []


def _skip_namedtuple_fields(app, what, name, obj, skip, options):
    """NamedTuple fields are documented by their class's ``Attributes:`` section (napoleon);
    autodoc would list them a second time as "Alias for field number N"."""
    if what == "class" and (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_namedtuple_fields)
