"""Claims as data: source and expected verdict, their validation, and the report's sections."""

import pytest

from molrg.study.claims import Claim, summary
from molrg.study.report import claim_sections


def _claim(name, passed, source, expected, reason=""):
    return Claim(name, "s", {"x": 1.0}, "t", passed, source=source, expected=expected, reason=reason)


def test_bad_source_or_expected_is_named():
    with pytest.raises(ValueError, match="source must be one of"):
        _claim("a", True, "P2", "PASS")
    with pytest.raises(ValueError, match="expected must be 'PASS' or 'FAIL'"):
        _claim("a", True, "P1", "pass")
    with pytest.raises(ValueError, match="an expected FAIL needs a reason"):
        _claim("a", False, "P1", "FAIL")


def test_as_expected_needs_a_stated_expectation():
    assert _claim("a", True, "P1", "PASS").as_expected
    assert _claim("a", False, "P1", "FAIL", "why").as_expected
    assert not _claim("a", False, "P1", "PASS").as_expected
    assert not Claim("a", "s", {}, "t", True).as_expected  # no source, no expectation


def test_summary_and_report_sections_split_by_source_and_verdict():
    cs = [_claim("paper_ok", True, "P1", "PASS"), _claim("paper_refuted", False, "P0", "FAIL", "measured x"),
          _claim("own", True, "molrg", "PASS"), _claim("regressed", False, "P1", "PASS")]
    s = summary(cs)
    assert s["as_expected"] == 3 and s["unexpected"] == ["regressed"]
    text = "\n".join(claim_sections(cs))
    order = [text.index(h) for h in ("### Unexpected verdicts", "### Paper claims reproduced",
                                     "### Paper claims not reproduced", "### molrg's own findings")]
    assert order == sorted(order)
    sections = text.split("### ")[1:]
    assert "`regressed`" in sections[0] and "`paper_ok`" in sections[1]
    assert "`paper_refuted`" in sections[2] and "measured x" in sections[2] and "`own`" in sections[3]
    assert "exits 1" in text


def test_every_claim_in_the_catalogue_states_source_and_expectation():
    """Static: every ``Claim(...)`` an experiment builds passes ``source=`` and ``expected=``
    (directly or through ``**`` keywords), so ``molrg check`` can compare every verdict."""
    import ast
    import pathlib

    import molrg.experiments

    missing = []
    for path in sorted(pathlib.Path(molrg.experiments.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Claim":
                names = {k.arg for k in node.keywords}
                if None not in names and not {"source", "expected"} <= names:
                    missing.append(f"{path.name}:{node.lineno}")
    assert not missing, f"Claim(...) without source= and expected=: {missing}"
