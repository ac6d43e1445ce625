"""The streaming empirical denoiser against a brute-force softmax over the training set."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import softmax

import molrg


def _brute(train, x, sigma, scale):
    train, x = np.asarray(train, np.float64), np.asarray(x, np.float64)
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (x.shape[0],))[:, None]
    sc = np.broadcast_to(np.asarray(scale, np.float64), (x.shape[0],))[:, None]
    d2 = ((x / sc)[:, None, :] - train[None, :, :]) ** 2
    logits = -d2.sum(-1) / (2 * sig**2)
    return softmax(logits, axis=1) @ train


@pytest.fixture(scope="module")
def data():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    train = jax.random.normal(k1, (103, 7), jnp.float64)
    x = 0.9 * (train[:9] + 0.5 * jax.random.normal(k2, (9, 7), jnp.float64))
    x = jnp.concatenate([x, 0.9 * jax.random.normal(k3, (4, 7), jnp.float64)])
    return train, x


@pytest.mark.parametrize("chunk", [1, 10, 103, 50, 1000])  # divides / does not divide N=103
@pytest.mark.parametrize("sigma", [0.05, 0.6, 20.0])
def test_matches_brute_force(data, chunk, sigma):
    train, x = data
    got = molrg.empirical_denoise(train, x, sigma, 0.9, chunk_size=chunk)
    np.testing.assert_allclose(got, _brute(train, x, sigma, 0.9), rtol=1e-10, atol=1e-12)


def test_per_sample_sigma_and_limits(data):
    train, x = data
    sig = jnp.geomspace(0.01, 30.0, x.shape[0])
    np.testing.assert_allclose(molrg.empirical_denoise(train, x, sig, 0.9, chunk_size=16),
                               _brute(train, x, sig, 0.9), rtol=1e-10, atol=1e-12)
    # tiny sigma -> nearest training point; huge sigma -> training mean
    near = molrg.empirical_denoise(train, train[:5] + 1e-4, 1e-3)
    np.testing.assert_allclose(near, train[:5], atol=1e-12)
    far = molrg.empirical_denoise(train, x, 1e4)
    np.testing.assert_allclose(far, np.broadcast_to(train.mean(0), x.shape), atol=1e-4)


def test_jit_vmap_and_float32(data):
    train, x = data
    f = jax.jit(lambda t, a, s: molrg.empirical_denoise(t, a, s, chunk_size=16))
    np.testing.assert_allclose(f(train, x, 0.4), molrg.empirical_denoise(train, x, 0.4), rtol=1e-12)
    sigmas = jnp.asarray([0.1, 1.0])
    by_sigma = jax.vmap(lambda s: molrg.empirical_denoise(train, x, s, chunk_size=16))(sigmas)
    np.testing.assert_allclose(by_sigma[1], _brute(train, x, 1.0, 1.0), rtol=1e-10)
    out32 = molrg.empirical_denoise(train.astype(jnp.float32), x.astype(jnp.float32), jnp.float32(0.4))
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(out32, _brute(train, x.astype(jnp.float32), 0.4, 1.0), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("chunk", [1, 10, 16, 103])
def test_mask_equals_the_subset(data, chunk):
    """0/1 weights give the empirical denoiser of the kept rows (dense oracle on the subset),
    including chunks that are masked entirely (rows 16..31 and everything past 90)."""
    train, x = data
    keep = np.ones(103, bool)
    keep[16:32] = False
    keep[90:] = False
    keep[[3, 40, 41]] = False
    sig = jnp.geomspace(0.02, 20.0, x.shape[0])
    got = molrg.empirical_denoise(train, x, sig, 0.9, weights=jnp.asarray(keep, train.dtype), chunk_size=chunk)
    np.testing.assert_allclose(got, _brute(np.asarray(train)[keep], x, sig, 0.9), rtol=1e-10, atol=1e-12)
    # A boolean mask is accepted as weights too.
    np.testing.assert_allclose(molrg.empirical_denoise(train, x, sig, 0.9, weights=keep, chunk_size=chunk),
                               got, rtol=1e-14)


def test_weights_are_repeated_points(data):
    """Integer weights act as repeated training points; the weights' scale does not matter."""
    train, x = data
    counts = np.arange(103) % 4  # 0, 1, 2, 3 copies
    repeated = np.repeat(np.asarray(train), counts, axis=0)
    want = _brute(repeated, x, 0.7, 0.9)
    w = jnp.asarray(counts, train.dtype)
    np.testing.assert_allclose(molrg.empirical_denoise(train, x, 0.7, 0.9, weights=w, chunk_size=10),
                               want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(molrg.empirical_denoise(train, x, 0.7, 0.9, weights=1e-3 * w),
                               want, rtol=1e-10, atol=1e-12)


def test_mask_traced_under_jit_and_vmap(data):
    """One compiled program for every subset size: the mask is an argument, N_keep traced."""
    train, x = data
    f = jax.jit(jax.vmap(lambda m, s: molrg.empirical_denoise(
        train, x, s, weights=(jnp.arange(103) < m).astype(train.dtype), chunk_size=16)))
    sizes, sigmas = jnp.asarray([1, 16, 17, 103]), jnp.asarray([0.3, 0.3, 2.0, 0.05])
    got = f(sizes, sigmas)
    for i in range(4):
        np.testing.assert_allclose(got[i], _brute(train[:int(sizes[i])], x, float(sigmas[i]), 1.0),
                                   rtol=1e-10, atol=1e-12)
    # One training point left: every output is that point.
    np.testing.assert_allclose(got[0], np.broadcast_to(train[0], x.shape), atol=1e-12)


def test_memory_does_not_grow_with_training_set_size():
    """XLA's temporary buffers depend on the chunk, not on N (the input itself aside)."""
    from molrg.empirical import _stream

    def temp_bytes(N):
        train = jax.ShapeDtypeStruct((N, 100), jnp.float32)
        x = jax.ShapeDtypeStruct((256, 100), jnp.float32)
        s = jax.ShapeDtypeStruct((), jnp.float32)
        compiled = _stream.lower(train, None, x, s, s, chunk_size=1024).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    small, big = temp_bytes(10_240), temp_bytes(1_024_000)
    assert big <= small * 1.01 + 4096, (small, big)
    # A few MB for batch 256 x chunk 1024 on CPU. GPUs add a fixed library workspace for
    # full-precision float32 products (measured 35 MB on an H200, also flat in N), so the
    # absolute bound is the CPU one; the flatness above is the property on every backend.
    limit = 10 * 2**20 if jax.default_backend() == "cpu" else 64 * 2**20
    assert big < limit, big


def test_validation(data):
    train, x = data
    with pytest.raises(ValueError, match=r"train_x: must have shape \(N, n\)"):
        molrg.empirical_denoise(train[0], x, 0.5)
    with pytest.raises(ValueError, match=r"train_x: must have shape \(N, n\) with N >= 1"):
        molrg.empirical_denoise(train[:0], x, 0.5)
    with pytest.raises(ValueError, match="x_t: last axis must have length n"):
        molrg.empirical_denoise(train, x[:, :3], 0.5)
    with pytest.raises(ValueError, match="sigma: must be > 0"):
        molrg.empirical_denoise(train, x, -1.0)
    with pytest.raises(ValueError, match="scale: must be > 0"):
        molrg.empirical_denoise(train, x, 0.5, 0.0)
    with pytest.raises(ValueError, match="chunk_size: must be a positive integer"):
        molrg.empirical_denoise(train, x, 0.5, chunk_size=0)
    with pytest.raises(ValueError, match="train_x: must contain only finite"):
        molrg.empirical_denoise(train.at[0, 0].set(jnp.inf), x, 0.5)
    with pytest.raises(ValueError, match=r"weights: must have shape \(N,\) = \(103,\)"):
        molrg.empirical_denoise(train, x, 0.5, weights=jnp.ones(102))
    with pytest.raises(ValueError, match="weights: must be >= 0"):
        molrg.empirical_denoise(train, x, 0.5, weights=jnp.ones(103).at[5].set(-1.0))
    with pytest.raises(ValueError, match="weights: must be finite"):
        molrg.empirical_denoise(train, x, 0.5, weights=jnp.ones(103).at[5].set(jnp.nan))
    with pytest.raises(ValueError, match="weights: must have at least one positive entry"):
        molrg.empirical_denoise(train, x, 0.5, weights=jnp.zeros(103))
