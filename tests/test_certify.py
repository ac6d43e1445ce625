"""Optimisation certificates (molrg.certify): the reached test, outcome codes and counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from molrg import certify


def test_reached_within_relative_tolerance_and_below_truth():
    truth = np.array([1.0, 1.0, 1.0, -2.0, 1.0])
    found = np.array([1.04, 1.06, 0.5, -1.95, np.nan])
    got = np.asarray(certify.reached(found, truth, rtol=0.05))
    np.testing.assert_array_equal(got, [True, False, True, True, False])


def test_certificate_fields():
    c = certify.certificate(jnp.array([2.0]), jnp.array([1.0]), rtol=0.1, atol=0.5)
    assert float(c["excess"][0]) == 1.0 and float(c["relative_excess"][0]) == 1.0
    assert not bool(c["reached"][0])
    assert bool(certify.certificate(1.5, 1.0, rtol=0.0, atol=0.5)["reached"])


def test_outcome_codes_and_split_under_vmap():
    rec = jnp.array([True, True, False, False])
    rea = jnp.array([True, False, True, False])
    codes = jax.jit(jax.vmap(certify.outcome))(rec, rea)
    np.testing.assert_array_equal(codes, [0, 0, 2, 1])
    s = certify.split(codes)
    assert s["n"] == 4 and s["success"] == 2 and s["optimisation failure"] == 1
    assert s["sample-complexity failure"] == 1
    assert s["success_rate"] == 0.5 and s["optimisation_failure_rate"] == 0.25
    assert np.isnan(certify.split([])["success_rate"])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "0.1"])
def test_bad_tolerance_is_named(bad):
    with pytest.raises(ValueError, match="rtol"):
        certify.reached(1.0, 1.0, rtol=bad)


def test_split_rejects_unknown_codes():
    with pytest.raises(ValueError, match="outcomes"):
        certify.split([0, 3])
