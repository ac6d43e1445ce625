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


@pytest.mark.parametrize("quick", [True, False])
def test_quick_fails_apply_to_quick_runs_only(tmp_path, quick):
    """An experiment's ``quick_fails`` turn the named claims' expectation to FAIL (with the
    reason) on results of a quick run, and leave full-scale expectations alone."""
    import dataclasses

    from molrg.study import Experiment, Results, evaluate, run_experiment

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        value: float = 2.0
        seed: int = 0

    def claims(results):
        ok = results["scalars"]["value"] == 2.0
        return [_claim("toy[a]", ok, "P1", "PASS"), _claim("toy[b]", ok, "P1", "PASS")]

    exp = Experiment(name="toy", summary="toy", config=Cfg(), run=lambda cfg, verbose=True: Results(
        scalars={"value": cfg.value}), plot=lambda r, f: [], quick={"value": 1.0}, claims=claims,
        quick_fails={"toy[a]": "underpowered"})
    path = run_experiment(exp, quick=quick, out_dir=str(tmp_path), verbose=False, plot=False)
    a, b = evaluate(exp, path, verbose=False)
    if quick:  # the quick value makes both claims FAIL: a as expected, b not
        assert (a.verdict, a.expected, a.reason) == ("FAIL", "FAIL", "quick scale: underpowered")
        assert a.as_expected and not b.as_expected
    else:
        assert a.expected == b.expected == "PASS" and a.as_expected and b.as_expected
