"""Denoiser networks as pure functions over parameter pytrees (docs/theory.md section 4).

Every network is a small frozen dataclass holding its static hyperparameters (shapes,
flags), hashable so it can be a static argument of ``jax.jit``. It has two methods:

    params = net.init(key)
    x0_hat = net.apply(params, x_t, sigma, scale)                      # (..., n)
    x0_hat, features = net.apply(params, x_t, sigma, scale, return_features=True)

``x_t`` is ``(..., n)`` with ``x_t = scale * (x_0 + sigma * eps)`` (molrg's convention,
docs/theory.md section 1); ``sigma`` and ``scale`` are scalars or one value per sample. Every
network predicts ``x_0``. Parameters are nested dicts/lists of arrays (any pytree of
arrays: :mod:`molrg.checkpoint` saves them). Computation runs in ``x_t``'s dtype,
which must match the parameters' dtype.

Networks:

- :class:`LowRankDenoiser` -- P1's eq. (4): ``U D(x_t) U^T x_t / s`` with learned
  orthonormal ``U`` (the polar factor of an unconstrained matrix, see below) and the
  exact-posterior block shrinkages ``beta_l`` of docs/theory.md section 3.
- :class:`SubspaceDenoiser` -- P0's ``delta = 0`` network, written literally in P0's
  variables ``s`` and ``gamma = s sigma``.
- :class:`MLPDenoiser` -- a tiny-diffusion-like MLP with EDM preconditioning.
- :class:`LinearDenoiser` -- the Gaussian MMSE (Wiener) denoiser of a fitted covariance;
  :func:`fit_linear` fits it in closed form.

Feature taps (``return_features=True``) are named per network, see each class.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from molrg._validate import as_float, check_noise_level, check_points, fail, is_concrete

Array = jax.Array

__all__ = [
    "LowRankDenoiser",
    "SubspaceDenoiser",
    "MLPDenoiser",
    "LinearDenoiser",
    "fit_linear",
    "polar",
]


# ----------------------------------------------------------------------------------------
# Shared input handling.
# ----------------------------------------------------------------------------------------
def _check_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        fail(name, f"must be an integer >= {minimum}; got {value!r}")


def _prepare(n: int, params_dtype, x_t, sigma, scale):
    """Validates and flattens: x (B, n), sigma/scale () or (B,), batch shape, dtype."""
    check_points("x_t", x_t, n)
    batch_shape = tuple(np.shape(x_t)[:-1])
    check_noise_level("sigma", sigma, batch_shape)
    check_noise_level("scale", scale, batch_shape)
    x = jnp.asarray(x_t)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        fail("x_t", f"must be a floating array; got dtype {x.dtype}")
    if params_dtype is not None and x.dtype != params_dtype:
        fail("x_t", f"dtype {x.dtype} must match the parameters' dtype {params_dtype}")
    dtype = x.dtype
    x = x.reshape(-1, n)

    def per_sample(v):
        v = jnp.asarray(v).astype(dtype)
        return v if v.ndim == 0 else v.reshape(-1)

    return x, per_sample(sigma), per_sample(scale), batch_shape, dtype


def _normal(key, shape, dtype):
    # Drawn flat and reshaped: XLA on CPU compiles multi-dimensional threefry draws
    # several times slower than flat ones.
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def _col(v: Array) -> Array:
    """A per-sample (B,) value as a (B, 1) column; scalars stay scalars."""
    return v if v.ndim == 0 else v[:, None]


def _unflatten(batch_shape, out, features):
    out = out.reshape(*batch_shape, out.shape[-1])
    if features is None:
        return out
    features = {k: v.reshape(*batch_shape, *v.shape[1:]) for k, v in features.items()}
    return out, features


@functools.partial(jax.jit, static_argnames=("net", "features"))
def _forward(net, params, x, sigma, scale, features):
    """Each network's maths as one compiled program (validation happens outside), so
    eager calls compile once per shape instead of dispatching op by op."""
    return net._forward(params, x, sigma, scale, features)


def _check_leaf(name: str, params, key: str, shape: tuple) -> Array:
    if not isinstance(params, dict) or key not in params:
        fail(name, f"must be a dict with key {key!r} (from this network's init)")
    leaf = params[key]
    if tuple(np.shape(leaf)) != tuple(shape):
        fail(name, f"{key!r} must have shape {tuple(shape)}; got {tuple(np.shape(leaf))}")
    return leaf


# ----------------------------------------------------------------------------------------
# Orthonormal columns: the polar factor, with a derivative that survives degeneracy.
# ----------------------------------------------------------------------------------------
@jax.custom_jvp
def _inv_sqrt_spd(m: Array) -> Array:
    """``M^{-1/2}`` of a symmetric positive definite ``(r, r)`` matrix, via ``eigh``."""
    lam, vec = jnp.linalg.eigh(m)
    return (vec * lax.rsqrt(lam)[None, :]) @ vec.T


@_inv_sqrt_spd.defjvp
def _inv_sqrt_spd_jvp(primals, tangents):
    # Daleckii-Krein: d f(M)[E] = V (G o (V^T E V)) V^T with the divided differences
    # G_ij = (f(l_i) - f(l_j)) / (l_i - l_j) of f(l) = l^{-1/2}, which simplify to
    # -1 / (sqrt(l_i l_j) (sqrt(l_i) + sqrt(l_j))): no division by l_i - l_j, and the
    # diagonal is f'(l_i). The plain eigh derivative divides by l_i - l_j and is NaN at
    # M = A^T A = I, the very point of an orthonormal A (e.g. initialised at U*).
    (m,), (dm,) = primals, tangents
    lam, vec = jnp.linalg.eigh(m)
    inv_root = lax.rsqrt(lam)
    root = jnp.sqrt(lam)
    out = (vec * inv_root[None, :]) @ vec.T
    g = -(inv_root[:, None] * inv_root[None, :]) / (root[:, None] + root[None, :])
    dm = 0.5 * (dm + dm.T)
    dout = vec @ (g * (vec.T @ dm @ vec)) @ vec.T
    return out, dout


def polar(a: Array) -> Array:
    """The orthonormal polar factor ``U = A (A^T A)^{-1/2}`` of a full-rank ``(n, r)`` A.

    ``U`` is the orthonormal matrix nearest to ``A`` in Frobenius norm; it is invariant
    to ``A -> c A`` and equivariant to rotations on either side
    (``polar(Q A R) = Q polar(A) R``). First derivatives are exact wherever ``A`` has
    full rank, including at orthonormal ``A`` (custom JVP, see ``_inv_sqrt_spd``);
    second derivatives are not supported at repeated singular values. Cost: one
    ``(r, r)`` eigendecomposition plus ``O(n r^2)``.
    """
    if np.ndim(a) != 2 or np.shape(a)[1] > np.shape(a)[0]:
        fail("a", f"must be a tall (n, r) matrix with r <= n; got shape {np.shape(a)}")
    a = jnp.asarray(a)
    return a @ _inv_sqrt_spd(a.T @ a)


# ----------------------------------------------------------------------------------------
# P1's low-rank network (eq. 4) and P0's delta = 0 network.
# ----------------------------------------------------------------------------------------
def _check_low_rank_shape(n, K, d):
    _check_int("n", n)
    _check_int("K", K)
    _check_int("d", d)
    if K * d > n:
        fail("K, d", f"need K * d <= n for K orthonormal blocks of d columns; got K*d = {K * d} > n = {n}")


def _init_frame(key, n, r, bases, dtype):
    if bases is not None:
        a = jnp.asarray(bases)
        if a.shape != (n, r):
            fail("bases", f"must have shape (n, K*d) = ({n}, {r}); got {a.shape}")
        if dtype is not None:
            a = a.astype(dtype)
        return a
    dtype = dtype or jnp.zeros((), dtype=float).dtype
    # Gaussian A: its polar factor is Haar-distributed on the Stiefel manifold.
    return _normal(key, (n, r), dtype) / math.sqrt(n)


@dataclasses.dataclass(frozen=True)
class LowRankDenoiser:
    """P1's low-rank network, eq. (4): ``x_theta = U D U^T y``, ``y = x_t / s``.

    With ``U = [U_1 ... U_K]`` (n x Kd, orthonormal columns, learned), block energies
    ``e_l = ||U_l^T y||^2`` and (docs/theory.md section 3, with the learned blocks)

        w    = softmax_l( (1 - delta^2) e_l / (2 (1 + sigma^2)(delta^2 + sigma^2)) )
        beta = xi + (zeta - xi) w,   zeta = 1 / (1 + sigma^2),  xi = delta^2 / (delta^2 + sigma^2)
        D    = blockdiag(beta_1 I_d, ..., beta_K I_d),   h = D U^T y,   x_theta = U h.

    Scale: the formula is stated for ``s = 1``; since ``x_t / s = x_0 + sigma eps`` is the
    ``s = 1`` input, the general case applies it to ``y = x_t / s``. With ``U = U*`` it is
    the exact denoiser of P1's Assumption-1 mixture (orthogonal subspaces, equal d,
    uniform weights, zero means, eta = 0) for every ``(sigma, s)``.

    Parameterisation of ``U``: ``U = polar(A) = A (A^T A)^{-1/2}`` for an unconstrained
    ``A`` (params ``{"A": (n, Kd)}``). Why polar: ``U^T U = I`` holds to rounding after
    every optimiser step whatever ``A`` drifts to (no retraction step, plain optax
    optimisers apply); it treats all blocks and columns alike (QR/Gram-Schmidt would
    privilege the first block: block 2's span would depend on block 1's columns of A);
    it is scale-invariant and rotation-equivariant; and ``A = U*`` gives ``U = U*``
    exactly. Cayley or matrix-exponential maps need an n x n skew matrix. Its one
    pitfall, the eigh derivative at degenerate ``A^T A`` (e.g. ``A`` orthonormal), is
    avoided with a custom JVP (:func:`polar`).

    delta: fixed by default at the class attribute ``delta`` (the data's true value
    when known: P1's eq. (4) treats delta as known and learns only U). With
    ``learn_delta=True`` the parameter ``"log_delta"`` (initialised at ``log(delta)``,
    so ``delta > 0`` is required) is learned too.

    Feature taps: ``"blocks"`` ``(B, K, d)`` = ``U_l^T y``; ``"posterior"`` ``(B, K)`` = w;
    ``"h"`` ``(B, K d)`` = ``D U^T y`` (the representation of P1; output is ``U h``).

    Training note (measured, see tests/test_training.py): from random starts gradient
    training finds the stacked span ``span(U*)`` but often stalls with some directions
    in the wrong block (a local minimum of the population loss; matched subspace error
    ``~ 2 sqrt(m)`` for m misplaced directions). In P1's Fig. 3 setting none of 8 seeds
    recovered the blocks in 15,000 Adam steps. :mod:`molrg.recovery` holds the recipe that
    does (restarts selected by objective, then a decayed learning rate: 16 of 16 seeds at
    K = 3 and K = 2), certified against the network started at the true subspaces.

    Attributes:
      n: ambient dimension.
      K: number of blocks (classes).
      d: columns per block.
      delta: the detail level (fixed value, or initial value when learned), >= 0.
      learn_delta: learn ``log_delta`` too.

    Example:
      >>> net = LowRankDenoiser(n=50, K=3, d=5, delta=0.2)
      >>> params = net.init(jax.random.key(0))
      >>> x0_hat = net.apply(params, x_t, 0.5)
    """

    n: int
    K: int
    d: int
    delta: float = 0.0
    learn_delta: bool = False

    def __post_init__(self):
        _check_low_rank_shape(self.n, self.K, self.d)
        if not (isinstance(self.delta, (int, float, np.floating)) and math.isfinite(self.delta)
                and self.delta >= 0):
            fail("delta", f"must be a finite float >= 0; got {self.delta!r}")
        if self.learn_delta and self.delta <= 0:
            fail("delta", "must be > 0 when learn_delta=True (it is learned as log(delta))")

    def init(self, key: Array, *, bases=None, dtype=None) -> dict:
        """Parameters ``{"A": (n, K d)[, "log_delta": ()]}``.

        Args:
          key: PRNG key (unused when ``bases`` is given).
          bases: optional ``(n, K d)`` starting ``A`` (e.g. the true stacked bases).
          dtype: float dtype (default: ``bases``' dtype, else JAX's default float).
        """
        a = _init_frame(key, self.n, self.K * self.d, bases, dtype)
        params = {"A": a}
        if self.learn_delta:
            params["log_delta"] = jnp.asarray(math.log(self.delta), a.dtype)
        return params

    def bases(self, params) -> Array:
        """The learned orthonormal ``U`` (n, K d)."""
        a = _check_leaf("params", params, "A", (self.n, self.K * self.d))
        return polar(a)

    def _delta(self, params, dtype):
        if self.learn_delta:
            return jnp.exp(params["log_delta"])
        return jnp.asarray(self.delta, dtype)

    def apply(self, params, x_t, sigma, scale=1.0, *, return_features: bool = False):
        """``x_0`` estimate ``(..., n)`` [and the feature dict]; see the class docstring."""
        a = _check_leaf("params", params, "A", (self.n, self.K * self.d))
        if self.learn_delta:
            _check_leaf("params", params, "log_delta", ())
        x, sig, sc, batch, _ = _prepare(self.n, jnp.asarray(a).dtype, x_t, sigma, scale)
        out, feats = _forward(self, params, x, sig, sc, return_features)
        return _unflatten(batch, out, feats)

    def _forward(self, params, x, sig, sc, return_features):
        u = polar(params["A"])
        delta2 = jnp.square(self._delta(params, x.dtype))
        y = x / _col(sc)
        coords = y @ u  # (B, K d)
        blocks = coords.reshape(-1, self.K, self.d)
        energy = jnp.sum(blocks * blocks, axis=-1)  # (B, K)
        s2 = _col(jnp.square(sig))
        rate = (1.0 - delta2) / (2.0 * (1.0 + s2) * (delta2 + s2))
        w = jax.nn.softmax(rate * energy, axis=-1)
        zeta = 1.0 / (1.0 + s2)
        xi = delta2 / (delta2 + s2)
        beta = xi + (zeta - xi) * w  # (B, K)
        h = (beta[:, :, None] * blocks).reshape(-1, self.K * self.d)
        out = h @ u.T
        return out, ({"blocks": blocks, "posterior": w, "h": h} if return_features else None)


@dataclasses.dataclass(frozen=True)
class SubspaceDenoiser:
    """P0's ``delta = 0`` network in P0's variables (docs/theory.md section 4).

    With ``x_t = s x_0 + gamma eps`` (so ``gamma = s sigma`` in molrg's convention):

        x_theta = s / (s^2 + gamma^2) * sum_k w_k U_k U_k^T x_t,
        w = softmax_k( s^2 ||U_k^T x_t||^2 / (2 gamma^2 (s^2 + gamma^2)) ).

    docs/theory.md (section 4) gives the prefactor but not the softmax temperature; the temperature above is
    derived from the exact posterior of the ``delta = 0``, uniform-weight, equal-d MoLRG
    (class k: ``x_t ~ N(0, s^2 U_k U_k^T + gamma^2 I)``; the log-determinants are equal
    across classes and the quadratic forms differ by ``s^2 ||U_k^T x_t||^2 /
    (gamma^2 (s^2 + gamma^2))``). In molrg's variables this is exactly
    :class:`LowRankDenoiser` with ``delta = 0``: ``s / (s^2 + gamma^2) = zeta / s`` and the
    temperature equals ``1 / (2 sigma^2 (1 + sigma^2))`` on ``y = x_t / s``; the tests
    check both identities and the match with :func:`molrg.denoise`.

    Parameterisation, parameters and feature taps as in :class:`LowRankDenoiser`
    (``"h"`` = ``(s / (s^2 + gamma^2)) w_k U_k^T x_t`` stacked, in units of ``x_0``).
    """

    n: int
    K: int
    d: int

    def __post_init__(self):
        _check_low_rank_shape(self.n, self.K, self.d)

    def init(self, key: Array, *, bases=None, dtype=None) -> dict:
        """Parameters ``{"A": (n, K d)}``; see :meth:`LowRankDenoiser.init`."""
        return {"A": _init_frame(key, self.n, self.K * self.d, bases, dtype)}

    def bases(self, params) -> Array:
        """The learned orthonormal ``U`` (n, K d)."""
        return polar(_check_leaf("params", params, "A", (self.n, self.K * self.d)))

    def apply(self, params, x_t, sigma, scale=1.0, *, return_features: bool = False):
        """``x_0`` estimate ``(..., n)`` [and the feature dict]."""
        a = _check_leaf("params", params, "A", (self.n, self.K * self.d))
        x, sig, sc, batch, _ = _prepare(self.n, jnp.asarray(a).dtype, x_t, sigma, scale)
        out, feats = _forward(self, params, x, sig, sc, return_features)
        return _unflatten(batch, out, feats)

    def _forward(self, params, x, sig, sc, return_features):
        u = polar(params["A"])
        s = _col(sc)
        gamma = s * _col(sig)
        s2, g2 = jnp.square(s), jnp.square(gamma)
        blocks_raw = (x @ u).reshape(-1, self.K, self.d)  # U_k^T x_t
        energy = jnp.sum(blocks_raw * blocks_raw, axis=-1)
        w = jax.nn.softmax(s2 * energy / (2.0 * g2 * (s2 + g2)), axis=-1)
        coef = s / (s2 + g2)
        h = (coef * w)[:, :, None] * blocks_raw
        h = h.reshape(-1, self.K * self.d)
        out = h @ u.T
        feats = None
        if return_features:
            feats = {"blocks": blocks_raw / s[..., None] if s.ndim else blocks_raw / s,
                     "posterior": w, "h": h}
        return out, feats


# ----------------------------------------------------------------------------------------
# MLP (tiny-diffusion-like, EDM preconditioned).
# ----------------------------------------------------------------------------------------
def _dense_init(key, fan_in, fan_out, dtype):
    # LeCun normal weights, zero biases.
    w = _normal(key, (fan_in, fan_out), dtype) / math.sqrt(fan_in)
    return {"w": w, "b": jnp.zeros((fan_out,), dtype)}


@dataclasses.dataclass(frozen=True)
class MLPDenoiser:
    """A small MLP denoiser like tiny-diffusion's, predicting ``x_0`` with EDM scalings.

    With ``y = x_t / s`` and EDM's preconditioning (Karras et al. 2022, Table 1),

        c_in = 1 / sqrt(sigma^2 + sigma_data^2),  c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),
        c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
        x_theta = c_skip y + c_out F([c_in y, emb(log sigma)])          (skip=True)
        x_theta = F([c_in y, emb(log sigma)])                            (skip=False)

    so the network's input and target both have about unit variance at every noise level
    (with ``sigma_data`` the data's per-coordinate std). ``emb`` is a sinusoidal embedding
    of ``log sigma`` (works for DDPM and VE alike): ``[sin(f_j u), cos(f_j u)]`` with
    ``u = log sigma`` and ``embed_dim / 2`` frequencies ``f_j`` geometric in
    ``[1, max_freq]``. ``F``: a GELU input layer to ``width``, then ``depth - 1`` residual
    blocks ``h + gelu(W h + b)`` (tiny-diffusion's ``Block``), then a linear output layer.

    FiLM conditioning (``film=True``): a GELU layer maps the embedding to ``c`` (width), and
    every hidden layer's pre-activation ``a`` becomes ``a (1 + gamma_i) + beta_i`` with
    ``[gamma_i, beta_i] = W_i c + b_i`` (zero-initialised, so training starts from the concat
    network). Why: with this preconditioning the target of ``F`` in directions where the
    data has no variance is ``-(sigma_data / sigma)`` times its input there, a gain that
    changes 100-fold over P1's timestep grid; the concat network does not learn that
    product of input and noise level (measured in P1's Fig. 3 setting: its outputs at the
    smallest levels stay the identity map, 2.4x the Bayes MSE; with FiLM and EDM's loss
    weighting 0.07x, see :mod:`molrg.experiments.fig3_trained`).

    ``sigma_data``: EDM's data std, the per-coordinate std of the training data (molrg's
    experiments measure it, e.g. about 0.33 in P1's Fig. 3 setting); the default 0.5 is
    EDM's image value.

    Parameters: ``{"input": {"w", "b"}, "blocks": [{"w", "b"}, ...], "output": {"w", "b"}}``,
    plus ``"embed": {"w", "b"}`` and ``"film": [{"w", "b"}] * depth`` with ``film=True``.
    Feature taps: ``"hidden_1"`` .. ``"hidden_<depth>"`` ``(B, width)``, the activations after
    the input layer and after each residual block.

    Attributes:
      n: ambient dimension.
      width: hidden width (default 128).
      depth: number of hidden layers (default 3).
      embed_dim: size of the noise embedding (even).
      max_freq: largest embedding frequency.
      sigma_data: the data std used by the preconditioning.
      skip: use the EDM skip connection (else predict ``x_0`` directly).
      film: FiLM conditioning of every hidden layer on the noise embedding.
    """

    n: int
    width: int = 128
    depth: int = 3
    embed_dim: int = 32
    max_freq: float = 32.0
    sigma_data: float = 0.5
    skip: bool = True
    film: bool = False

    def __post_init__(self):
        _check_int("n", self.n)
        _check_int("width", self.width)
        _check_int("depth", self.depth)
        _check_int("embed_dim", self.embed_dim, 2)
        if self.embed_dim % 2:
            fail("embed_dim", f"must be even; got {self.embed_dim}")
        if not (math.isfinite(self.max_freq) and self.max_freq >= 1.0):
            fail("max_freq", f"must be finite and >= 1; got {self.max_freq!r}")
        if not (math.isfinite(self.sigma_data) and self.sigma_data > 0):
            fail("sigma_data", f"must be finite and > 0; got {self.sigma_data!r}")

    def init(self, key: Array, *, dtype=None) -> dict:
        """Parameters (LeCun-normal weights, zero biases; FiLM maps start at zero)."""
        dtype = dtype or jnp.zeros((), dtype=float).dtype
        keys = jax.random.split(key, self.depth + 2)
        params = {
            "input": _dense_init(keys[0], self.n + self.embed_dim, self.width, dtype),
            "blocks": [_dense_init(keys[i], self.width, self.width, dtype)
                       for i in range(1, self.depth)],
            "output": _dense_init(keys[self.depth], self.width, self.n, dtype),
        }
        if self.film:
            # Zero FiLM maps: at initialisation the network is the plain concat MLP (scale 1,
            # shift 0 in every layer); the modulation is learned from there.
            zero = lambda: {"w": jnp.zeros((self.width, 2 * self.width), dtype),  # noqa: E731
                            "b": jnp.zeros((2 * self.width,), dtype)}
            params["embed"] = _dense_init(keys[self.depth + 1], self.embed_dim, self.width, dtype)
            params["film"] = [zero() for _ in range(self.depth)]
        return params

    def _check_params(self, params):
        keys = {"input", "blocks", "output"} | ({"embed", "film"} if self.film else set())
        if not isinstance(params, dict) or set(params) != keys:
            fail("params", f"must be a dict with keys {sorted(keys)} (from this network's init)")
        if self.film:
            _check_leaf("params['embed']", params["embed"], "w", (self.embed_dim, self.width))
            if not isinstance(params["film"], (list, tuple)) or len(params["film"]) != self.depth:
                fail("params", f"'film' must be a list of depth = {self.depth} layers")
            for layer in params["film"]:
                _check_leaf("params['film']", layer, "w", (self.width, 2 * self.width))
        _check_leaf("params['input']", params["input"], "w", (self.n + self.embed_dim, self.width))
        if not isinstance(params["blocks"], (list, tuple)) or len(params["blocks"]) != self.depth - 1:
            fail("params", f"'blocks' must be a list of depth - 1 = {self.depth - 1} layers")
        for blk in params["blocks"]:
            _check_leaf("params['blocks']", blk, "w", (self.width, self.width))
        _check_leaf("params['output']", params["output"], "w", (self.width, self.n))
        return jnp.asarray(params["input"]["w"]).dtype

    def embed(self, sigma: Array, dtype) -> Array:
        """Sinusoidal embedding of ``log sigma``: ``(..., embed_dim)``."""
        half = self.embed_dim // 2
        freqs = jnp.asarray(np.geomspace(1.0, self.max_freq, half), dtype)
        log_sigma = jnp.log(jnp.asarray(sigma, dtype))
        u = log_sigma[..., None] * freqs.reshape((1,) * log_sigma.ndim + (half,))
        return jnp.concatenate([jnp.sin(u), jnp.cos(u)], axis=-1)

    def apply(self, params, x_t, sigma, scale=1.0, *, return_features: bool = False):
        """``x_0`` estimate ``(..., n)`` [and the feature dict]; see the class docstring."""
        pdtype = self._check_params(params)
        x, sig, sc, batch, _ = _prepare(self.n, pdtype, x_t, sigma, scale)
        out, feats = _forward(self, params, x, sig, sc, return_features)
        return _unflatten(batch, out, feats)

    def _forward(self, params, x, sig, sc, return_features):
        dtype = x.dtype
        num = x.shape[0]
        y = x / _col(sc)
        sd2 = jnp.asarray(self.sigma_data**2, dtype)
        s2 = _col(jnp.square(sig))
        c_in = lax.rsqrt(s2 + sd2)
        emb = self.embed(sig, dtype)
        if emb.ndim == 1:
            emb = jnp.broadcast_to(emb[None, :], (num, self.embed_dim))
        inp = jnp.concatenate([c_in * y, emb], axis=-1)
        if self.film:
            cond = jax.nn.gelu(emb @ params["embed"]["w"] + params["embed"]["b"][None, :],
                               approximate=False)

        def modulate(pre, i):
            if not self.film:
                return pre
            gb = cond @ params["film"][i]["w"] + params["film"][i]["b"][None, :]
            return pre * (1.0 + gb[:, :self.width]) + gb[:, self.width:]

        feats = {}
        pre = inp @ params["input"]["w"] + params["input"]["b"][None, :]
        hid = jax.nn.gelu(modulate(pre, 0), approximate=False)
        feats["hidden_1"] = hid
        for i, blk in enumerate(params["blocks"]):
            pre = hid @ blk["w"] + blk["b"][None, :]
            hid = hid + jax.nn.gelu(modulate(pre, i + 1), approximate=False)
            feats[f"hidden_{i + 2}"] = hid
        f_out = hid @ params["output"]["w"] + params["output"]["b"][None, :]
        if self.skip:
            c_skip = sd2 / (s2 + sd2)
            c_out = jnp.sqrt(s2) * self.sigma_data * lax.rsqrt(s2 + sd2)
            out = c_skip * y + c_out * f_out
        else:
            out = f_out
        return out, (feats if return_features else None)


# ----------------------------------------------------------------------------------------
# Linear (Wiener) baseline.
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LinearDenoiser:
    """The Gaussian MMSE (Wiener) denoiser of a covariance ``S = V diag(lambda) V^T``.

        x_theta = m + V diag(lambda / (lambda + sigma^2)) V^T (y - m),   y = x_t / s,

    the exact ``E[x_0 | x_t]`` when ``x_0 ~ N(m, S)``: the best *linear* denoiser of data
    with mean ``m`` and covariance ``S`` (the per-level shrinkage of the eigenvalues).
    With ``rank < n`` directions outside ``V`` are treated as zero-variance (shrunk to
    ``m``). Parameters ``{"mean": (n,), "eigvals": (r,), "eigvecs": (n, r)}``, usually
    from :func:`fit_linear`; it is differentiable, but not meant to be trained (the
    eigenvectors would lose orthonormality). Feature tap ``"h"`` ``(B, r)``: the shrunk
    eigen-coordinates.

    Attributes:
      n: ambient dimension.
      rank: number of eigen-directions kept (None: n).
    """

    n: int
    rank: int | None = None

    def __post_init__(self):
        _check_int("n", self.n)
        if self.rank is not None:
            _check_int("rank", self.rank)
            if self.rank > self.n:
                fail("rank", f"must be <= n = {self.n}; got {self.rank}")

    @property
    def r(self) -> int:
        return self.n if self.rank is None else self.rank

    def init(self, key: Array = None, *, dtype=None) -> dict:
        """Identity-covariance parameters (a placeholder; use :func:`fit_linear`)."""
        dtype = dtype or jnp.zeros((), dtype=float).dtype
        return {"mean": jnp.zeros((self.n,), dtype), "eigvals": jnp.ones((self.r,), dtype),
                "eigvecs": jnp.eye(self.n, self.r, dtype=dtype)}

    def apply(self, params, x_t, sigma, scale=1.0, *, return_features: bool = False):
        """``x_0`` estimate ``(..., n)`` [and ``{"h": (..., r)}``]."""
        mean = _check_leaf("params", params, "mean", (self.n,))
        _check_leaf("params", params, "eigvals", (self.r,))
        _check_leaf("params", params, "eigvecs", (self.n, self.r))
        x, sig, sc, batch, _ = _prepare(self.n, jnp.asarray(mean).dtype, x_t, sigma, scale)
        out, feats = _forward(self, params, x, sig, sc, return_features)
        return _unflatten(batch, out, feats)

    def _forward(self, params, x, sig, sc, return_features):
        mean, lam, vec = params["mean"], params["eigvals"], params["eigvecs"]
        centred = x / _col(sc) - mean[None, :]
        coords = centred @ vec
        h = coords * (lam[None, :] / (lam[None, :] + _col(jnp.square(sig))))
        out = mean[None, :] + h @ vec.T
        return out, ({"h": h} if return_features else None)


def fit_linear(x0_train, *, rank: int | None = None) -> dict:
    """Closed-form :class:`LinearDenoiser` parameters from training data.

    The empirical mean and (maximum-likelihood, ``1/N``) covariance, diagonalised once;
    each noise level then only rescales eigenvalues. Eigenvalues are sorted descending,
    clipped at 0, and the top ``rank`` kept.

    Args:
      x0_train: ``(N, n)`` clean training samples, N >= 1.
      rank: eigen-directions to keep (None: all n).

    Returns:
      ``{"mean": (n,), "eigvals": (r,), "eigvecs": (n, r)}`` in ``x0_train``'s dtype.
    """
    if np.ndim(x0_train) != 2 or np.shape(x0_train)[0] < 1:
        fail("x0_train", f"must have shape (N, n) with N >= 1; got {np.shape(x0_train)}")
    n = int(np.shape(x0_train)[1])
    if rank is not None:
        _check_int("rank", rank)
        if rank > n:
            fail("rank", f"must be <= n = {n}; got {rank}")
    x = as_float(x0_train)
    if is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        fail("x0_train", "must contain only finite values")
    mean = jnp.mean(x, axis=0)
    centred = x - mean[None, :]
    cov = (centred.T @ centred) / x.shape[0]
    lam, vec = jnp.linalg.eigh(cov)
    lam, vec = jnp.maximum(lam[::-1], 0.0), vec[:, ::-1]
    r = n if rank is None else rank
    return {"mean": mean, "eigvals": lam[:r], "eigvecs": vec[:, :r]}
