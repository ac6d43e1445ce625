"""The study programs never let two LAPACK calls run side by side (jaxlib 2-core deadlock)."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from molrg.experiments import sweepable
from tests.lapack_order import lapack_unordered_pairs

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu",
                                reason="LAPACK custom calls exist only in XLA:CPU programs")


def _hlo(fn, *args):
    return jax.jit(fn).lower(*args).compile().as_text()


def test_checker_finds_the_unordered_qr_eigh_pair():
    """The pattern that hung `molrg run phase_transition`: Q formation beside an eigh of R R^T."""
    x, c = jnp.ones((30, 48)), 8

    def pca(w):
        q, r = jnp.linalg.qr((jnp.sqrt(w)[:, None] * x).T)
        _, v = jnp.linalg.eigh(r @ r.T)
        return q @ v[:, :c]

    bad = lapack_unordered_pairs(_hlo(jax.vmap(pca), jnp.ones((4, 30))))
    assert len(bad) == 1 and {"householder_product", "eigh"} <= {p.split(".")[0] for p in bad[0][1:]}

    def ordered(w):
        q, r = jnp.linalg.qr((jnp.sqrt(w)[:, None] * x).T)
        r = jnp.where(jnp.isnan(q[0, 0]), jnp.nan, r)
        _, v = jnp.linalg.eigh(r @ r.T)
        return q @ v[:, :c]

    assert lapack_unordered_pairs(_hlo(jax.vmap(ordered), jnp.ones((4, 30)))) == []


@pytest.mark.parametrize("name,over", [("phase_transition", {"K": 2}),
                                       ("phase_transition_net", {"K": 2, "d": 3}),
                                       ("memorization", {})])
def test_study_programs_order_their_lapack_calls(name, over):
    sw = sweepable(name)
    cfg = dataclasses.replace(sw.config, **over)
    vals = {f: jnp.asarray([getattr(cfg, f)] * 2) for f in sw.numeric}
    hlo = _hlo(jax.vmap(lambda v: sw.point(cfg, v)), vals)
    assert "lapack_" in hlo  # the program does hold LAPACK calls
    assert lapack_unordered_pairs(hlo) == []
