"""The exact posterior, optimal denoiser and score of a MoLRG (docs/theory.md section 3).

With ``x_t = s (x_0 + sigma eps)`` class k gives ``x_t ~ N(s mu_k, s^2 (Sigma_k + sigma^2 I))``:

    p(k | x_t)   ∝ pi_k N(x_t; s mu_k, s^2 (Sigma_k + sigma^2 I))
    E[x_0 | x_t] = sum_k p(k | x_t) [mu_k + Sigma_k (Sigma_k + sigma^2 I)^{-1} (x_t / s - mu_k)]
    score        = (s E[x_0 | x_t] - x_t) / (s^2 sigma^2)                    (Tweedie)

How it is computed (never an n x n matrix). Let ``W`` (n x r) be the frame of
:func:`molrg.mixture.geometry`, ``z = W^T x_t / s`` and ``c = eta^2 + sigma^2``. In
class k's eigen-coordinates ``u_k = Q_k^T (z - W^T mu_k)`` the covariance of ``x_t / s``
is ``diag(v_k) + c``; outside the frame it is ``c I`` for every class, so the part of
``x_t`` outside the frame drops out of the posterior. Dropping the class-independent
``||x_t / s - W z||^2 / c`` and ``n log c`` leaves, with ``G`` groups of equal variance,

    logit_k = log pi_k - 1/2 sum_g n_g log1p(v_kg / c) - 1/2 sum_g E_kg / (v_kg + c)

with ``E_kg`` the energy of ``u_k`` in group g. When the energies are shared by all
classes (orthogonal subspaces, zero means) the class-independent
``sum_g E_g / (v_ref_g + c)`` (``v_ref_g = max_k v_kg``) is dropped too, leaving
``E_g (v_ref_g - v_kg) / ((v_kg + c)(v_ref_g + c)) >= 0``: no term cancels another,
so the logits keep their accuracy in float32 for sigma from 1e-4 to 1e4. With
per-class coordinates the plain sum's absolute error is ``~eps sum_g E_kg / (v_kg + c)``,
``~eps |x_t / s|^2 / c`` at large sigma, where every class has nearly that value and the
differences are a factor ``v / c`` smaller: for inputs 1e3 times their typical size at
sigma = 100 that is a nat. There the sum is rewritten with ``1 / (v + c) = 1 / c - v /
(c (v + c))``, dropping the common ``|x_t / s|^2 / c`` (:func:`_quadratic_forms`), which
brings the general path for large inputs to within a small factor of the orthogonal
path's accuracy (below). The conditional mean of class k is
``m_k + Q_k (g_k * u_k)`` in the frame with shrinkage ``g = (v + eta^2) / (v + c)``, plus
``eta^2 / c`` times the part of ``x_t / s`` outside the frame; the noise estimate
``x_t / s - E[x_0|x_t]`` (used by the score) uses ``1 - g = sigma^2 / (v + c)`` directly,
so the score does not lose digits to ``x_t - s E[x_0|x_t]`` at small sigma.

Cost: two ``(B, n) x (n, r)`` matrix products plus ``O(B K r)`` (orthogonal structure)
or ``O(B K r^2)`` (general structure) per call, and no pass over ``(B, n)`` arrays beyond
the two products (and the ambient term ``x_t / s`` when ``eta > 0``). The low-rank path:
with delta = 0 known statically (``MoLRG.sharp``) and zero means, class k's covariance is
``U_k U_k^T + eta^2 I`` whatever the angles between the subspaces, so the general structure
takes the orthogonal path's formulas with ``W = U`` (two ``(B, n) x (n, sum d_k)`` products
plus ``O(B sum d_k)``; see :func:`_frame`).

Accuracy and limits (float32 against float64 on the same float32 inputs and mixture; tests
in tests/test_posterior.py and tests/test_numerics_hardening.py): for sigma from 1e-4 to
1e4 and inputs of typical size, posteriors within 2e-5 and the denoiser within 5e-5
(relative) on every path. For sigma >= 1 and inputs up to 1e6 times their typical size,
posteriors and denoiser within 1e-3 (measured: 5e-5 orthogonal, 3.2e-4 general, the
latter from its float32 frame and eigenvectors; at sigma >= 100, 4e-5 on every path). For
typical inputs at sigma from 1e6 to 1e15 the denoiser, noise estimate and score stay
within 1e-5 of float64 (the orthogonal path's coefficients are products of bounded
factors, never ``(1 + c)(delta^2 + c)``, which overflows float32 at sigma ~ 4e9; with
eta > 0 the ambient weight ``eta^2 / c`` underflows beyond sigma ~ 1e17 eta). At
small sigma, inputs far larger than typical give decided posteriors that are right; near
a decision boundary the posterior there depends on the input to ``eps |x_t|``, which no
float32 computation resolves. Where a class's quadratic form ``|x_t / s|^2 / c`` overflows
the dtype (float32: ``|x_t / s|`` beyond ~1e19 at sigma ~ 1, earlier at small sigma) the
sample's outputs are NaN, never a wrong finite number; so are the samples whose traced
sigma or scale is not positive and finite.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from molrg._precision import full_precision
from molrg._validate import as_float, check_noise_level, check_points, fail, valid_noise_level
from molrg.mixture import Geometry, MoLRG, geometry

Array = jax.Array


def _prepare(mix, x_t, sigma, scale):
    if not isinstance(mix, MoLRG):
        fail("mix", f"must be a molrg.MoLRG; got {type(mix).__name__}")
    check_points("x_t", x_t, mix.n, width_of="mix.n, the ambient dimension of mix")
    batch_shape = tuple(np.shape(x_t)[:-1])
    check_noise_level("sigma", sigma, batch_shape)
    check_noise_level("scale", scale, batch_shape)
    x = as_float(x_t)
    dtype = x.dtype
    x = x.reshape(-1, mix.n)

    def per_sample(v):
        v = jnp.asarray(v, dtype)
        return v if v.ndim == 0 else v.reshape(-1)

    return x, per_sample(sigma), per_sample(scale), batch_shape, dtype


def _col(v):
    """A per-sample (B,) value as a (B, 1) column; scalars stay scalars."""
    return v if v.ndim == 0 else v[:, None]


# XLA:CPU runs a reduction over a short minor axis (K ~ 3-10 classes) well below memory speed,
# so up to _UNROLL classes the log-softmax's reductions over classes are written out as
# element-wise operations on (B,) columns. The orthogonal path's class energies |z_k|^2 with
# equal dims d: up to _UNROLL_DIM, a sum of d strided columns of the (B, K, d) coordinates,
# element-wise work that XLA fuses into the log-softmax's kernels (each of them recomputes
# it, O(d) per entry); beyond, one reduction over d, a kernel of its own that no consumer
# recomputes. Per-kernel profiles (jax.profiler, XLA:CPU, 2 cores), time beyond the two
# products: (B, n, K, d) = (4096, 50, 3, 5) 95-130 us strided against 190-270 reduced and
# ~300 with the former product by a 0/1 indicator matrix (square and product, two kernels);
# (16384, 128, 4, 8) 440-530 strided against 760-870 reduced; (8192, 256, 8, 16) 1.8-2.0 ms
# strided against 1.0-1.1 reduced; (2048, 784, 10, 16) 0.56-0.70 ms against 0.41. Unequal
# dims keep the indicator product.
_UNROLL = 16
_UNROLL_DIM = 8


def _group_sum(a, sizes):
    """Sums the last axis of ``a`` (..., r) over consecutive groups of ``sizes``."""
    r = a.shape[-1]
    G = len(sizes)
    if G == r:
        return a
    if len(set(sizes)) == 1:
        return a.reshape(*a.shape[:-1], G, sizes[0]).sum(-1)
    ind = np.zeros((r, G), dtype=np.float32)
    ind[np.arange(r), np.repeat(np.arange(G), sizes)] = 1.0
    return a @ jnp.asarray(ind, a.dtype)


def _log_softmax(logits):
    """``jax.nn.log_softmax`` over the last axis (the same formula: max-shifted, then
    ``log sum exp``), with the class reductions written out for few classes (see _UNROLL)."""
    K = logits.shape[-1]
    if K > _UNROLL:
        return jax.nn.log_softmax(logits, axis=-1)
    cols = [logits[..., k] for k in range(K)]
    top = jax.lax.stop_gradient(functools.reduce(jnp.maximum, cols))
    shifted = logits - top[..., None]
    total = functools.reduce(jnp.add, [jnp.exp(shifted[..., k]) for k in range(K)])
    return shifted - jnp.log(total)[..., None]


def _block_energies(z, sizes):
    """``|z_k|^2`` for each group of consecutive coordinates: z (B, r) -> (B, G)."""
    d = sizes[0]
    if len(set(sizes)) == 1 and d <= _UNROLL_DIM:
        zr = z.reshape(z.shape[0], len(sizes), d)
        return functools.reduce(jnp.add, [jnp.square(zr[:, :, j]) for j in range(d)])
    return _group_sum(z * z, sizes)


def _expand(a, sizes):
    """Repeats group values ``a`` (..., G) to the frame coordinates (..., r)."""
    if len(sizes) == sum(sizes):
        return a
    return a[..., np.repeat(np.arange(len(sizes)), sizes)]  # a constant-index gather


def _scale_groups(z, beta, sizes):
    """``z * expand(beta)`` for z (B, r), beta (B, G); a reshape when groups are equal."""
    G, r = len(sizes), z.shape[-1]
    if G == r:
        return z * beta
    if len(set(sizes)) == 1:
        return (z.reshape(-1, G, sizes[0]) * beta[:, :, None]).reshape(-1, r)
    return z * _expand(beta, sizes)


def _orthogonal_rates(delta2, cc):
    """``(1 - delta^2) / (delta^2 + c)`` and ``1 / (1 + c)``: the orthogonal path's
    coefficients are products of these, never of ``(1 + c)(delta^2 + c)`` itself, which
    overflows float32 at c ~ 2e19 (sigma ~ 4e9) and made the posterior-weighted part of the
    denoiser vanish (77% error at sigma = 1e10). Written identically in _analyse and
    _assemble, so XLA computes each once."""
    return (1.0 - delta2) / (delta2 + cc), 1.0 / (1.0 + cc)


def _frame(mix, dtype):
    """The frame the computation works in: :func:`molrg.mixture.geometry`, except on the
    low-rank path (delta = 0 statically, zero means, any angles between the subspaces).

    There class k's covariance is ``U_k U_k^T + eta^2 I``: variance ``1 + c`` on its own
    subspace and ``c`` everywhere else, so with ``e_k = |U_k^T x_t / s|^2`` the posterior and
    the class means need the stacked projections ``U^T x_t / s`` and nothing else, exactly
    as on the orthogonal path with delta = 0 (the other classes' subspaces never enter a
    class's covariance). The bases then serve as the "frame" ``W = U`` with ``Q_k = I``;
    ``W`` need not be orthonormal, since only ``U_k`` itself is used on class k's terms.
    Cost ``O(B K d)`` beyond the two products, against ``O(B K r^2)`` for per-class
    eigen-coordinates.
    """
    if mix.structure == "general" and mix.sharp and mix.means is None:
        eye = jnp.eye(mix.K, dtype=dtype)
        return Geometry(mix.stacked_bases.astype(dtype), None, eye, mix.dims, None)
    return geometry(mix, dtype)


def _analyse(mix, x, sigma, scale, dtype):
    """Logits of p(k|x_t) and what the denoiser needs. x (B, n); sigma/scale () or (B,)."""
    geo = _frame(mix, dtype)
    W, Q, v, sizes, m = geo
    eta2 = jnp.square(mix.noise.astype(dtype))
    sigma2 = jnp.square(sigma)
    c = eta2 + sigma2  # () or (B,)
    z = (x @ W) / _col(scale)  # (B, r)

    if m is None and Q is None:
        # Orthogonal blocks (or delta = 0 with any bases: _frame), zero means: class k has
        # variance 1 on its own block and delta^2 on the others (docs/theory.md section 3's closed form, with weights, unequal
        # dims, eta and per-sample noise). With block energies E_l = |U_l^T x_t / s|^2,
        #   logit_k = log pi_k + E_k (1 - delta^2) / (2 (1 + c)(delta^2 + c))
        #             - d_k / 2 log1p((1 - delta^2) / (delta^2 + c))   (+ common terms),
        # both written as bounded factors/log1p so they keep their accuracy at any sigma.
        energy = _block_energies(z, sizes)  # (B, K)
        delta2 = jnp.square(mix.delta.astype(dtype))
        cc = _col(c)
        gap_rate, own_rate = _orthogonal_rates(delta2, cc)
        logits = (jnp.log(mix.weights.astype(dtype))[None, :]
                  + 0.5 * energy * (gap_rate * own_rate))
        if len(set(mix.dims)) > 1:  # with equal dims the term is common to all classes
            dims = jnp.asarray(np.asarray(mix.dims), dtype)[None, :]
            logits = logits - 0.5 * dims * jnp.log1p(gap_rate)
        return logits, geo, z, z, c, cc, eta2, sigma2

    # General case: per-class coordinates (B, K, r) in groups of equal variance.
    dz = z[:, None, :] if m is None else z[:, None, :] - m[None, :, :]
    coords = dz if Q is None else jnp.einsum("bkr,krs->bks", dz, Q)
    energy = _group_sum(coords * coords, sizes)  # (B, K, G)

    v = v[None]  # (1, K, G): every per-class array below is (1 or B, K, ...)
    cc = c if c.ndim == 0 else c[:, None, None]
    n_g = jnp.asarray(np.asarray(sizes), dtype)[None, None, :]
    logdet = jnp.sum(n_g * jnp.log1p(v / cc), axis=-1)  # less the common n log c
    logits = (jnp.log(mix.weights.astype(dtype))[None, :] - 0.5 * logdet
              - 0.5 * _quadratic_forms(z, m, energy, v, c, cc))
    return logits, geo._replace(variances=v), z, coords, c, cc, eta2, sigma2


# The plain sum's rounding error (about eps times its size, in nats) above which the split
# form is used when it is smaller: 1e-5 keeps posteriors within the 2e-5 float32 tolerance.
_PLAIN_ERROR_NATS = 1e-5


def _quadratic_forms(z, m, energy, v, c, cc):
    """``quad_k = sum_g E_kg / (v_kg + c)`` up to a class-independent term, accurately.

    Two exact forms, per sample the one with the smaller rounding error:

    * plain: the sum itself, non-negative terms (no cancellation), absolute error
      ``~ eps quad_k``: what small ``c`` needs, where ``quad_k`` is small for the classes
      that matter and the class-independent term below is huge.
    * split: with ``1 / (v + c) = 1 / c - v / (c (v + c))`` and ``|u_k| = |z - m_k|``,
      ``quad_k = |z|^2 / c + m_k.(m_k - 2 z) / c - sum_g E_kg v_kg / (c (v_kg + c))``; the
      common ``|z|^2 / c`` is dropped. At large ``c`` or for large inputs every
      ``quad_k ~ |z|^2 / c`` and the class differences are a factor ``v / c`` smaller, so the
      plain sum loses them (eps |z|^2 / c absolute, e.g. 1 nat at sigma = 100 for inputs
      1e3 times their typical size); the split form's terms are of the size of the
      differences themselves, as in the orthogonal closed form.

    The plain sum is kept wherever its error is below ``_PLAIN_ERROR_NATS`` (typical
    inputs), so the usual numbers are unchanged. ``z`` (B, r); ``m`` (K, r) or None;
    ``energy`` (B, K, G); ``v`` (1, K, G); ``c`` () or (B,); ``cc`` its (B, 1, 1) form.
    """
    eps = jnp.finfo(z.dtype).eps
    plain = jnp.sum(energy / (v + cc), axis=-1)  # (B, K)
    c_col = _col(c)
    shrink = jnp.sum(energy * (v / (v + cc)), axis=-1) / c_col  # (B, K), >= 0
    if m is None:
        split, split_size = -shrink, shrink
    else:
        zm = z @ m.T  # (B, K)
        mm = jnp.sum(m * m, axis=-1)[None, :]
        split = (mm - 2.0 * zm) / c_col - shrink
        split_size = (mm + 2.0 * jnp.abs(zm)) / c_col + shrink
    # Judge each form by its classes of largest logit (smallest size): the others carry
    # almost no posterior mass, so their errors do not matter.
    plain_size = jnp.min(plain, axis=-1)
    use_split = (eps * plain_size > _PLAIN_ERROR_NATS) & (jnp.min(split_size, axis=-1) < plain_size)
    quad = jnp.where(use_split[:, None], split, plain)
    # A quadratic form that overflows (|x_t / s|^2 / c beyond the dtype's range) leaves no
    # way to compare the classes: NaN for the sample, never a wrong finite posterior.
    return jnp.where(jnp.all(jnp.isfinite(quad), axis=-1, keepdims=True), quad, jnp.nan)


def _assemble(mix, x, scale, analysed, log_w, which):
    """E[x0|x_t] (which='denoise') or x_t/s - E[x0|x_t] (which='noise')."""
    _, geo, z, coords, c, cc, eta2, sigma2 = analysed
    W, Q, v, sizes, m = geo
    w = jnp.exp(log_w)
    # A row's log posteriors are all NaN or all finite (_log_softmax: one NaN logit makes the
    # row's total NaN). NaN rows reach h, (B, r), and the last product spreads them over the
    # (B, n) output without another pass over it: on the orthogonal path every entry of h is
    # a product with its row's weights; the general path sets them explicitly (its products
    # over classes were seen to lose a NaN row under jit).
    nan_row = jnp.isnan(log_w[:, :1])
    if coords is z:  # orthogonal, zero means: beta_l = g_other + (g_own - g_other) w_l
        delta2 = jnp.square(mix.delta.astype(z.dtype))
        # g_own - g_other = +-sigma^2 (1 - delta^2) / ((1 + c)(delta^2 + c)), as a product of
        # bounded factors: sigma^2 / (1 + c) <= 1 and (1 - delta^2) / (delta^2 + c).
        s2 = _col(sigma2)
        gap_rate, own_rate = _orthogonal_rates(delta2, cc)
        spread = (s2 * own_rate) * gap_rate
        if which == "denoise":
            g_other, slope = (delta2 + eta2) / (delta2 + cc), spread
        else:
            g_other, slope = s2 / (delta2 + cc), -spread
        h = _scale_groups(z, g_other + slope * w, sizes)
        if which == "denoise" and mix.noiseless:
            return h @ W.T
        kappa = _col((eta2 if which == "denoise" else sigma2) / c)
        return (h - kappa * z) @ W.T + (kappa / _col(scale)) * x
    if which == "denoise":
        factor = (v + eta2) / (v + cc)  # shrinkage per class and group
        kappa = eta2 / c  # weight of the part outside the frame
    else:
        factor = (sigma2 if sigma2.ndim == 0 else sigma2[:, None, None]) / (v + cc)
        kappa = sigma2 / c
    t = _expand(factor, sizes) * coords  # (B, K, r)
    if Q is None:
        h = jnp.sum(w[:, :, None] * t, axis=1)  # broadcast-and-sum: CPU dots are slow at K ~ 10
    else:
        h = jnp.einsum("bk,bks,krs->br", w, t, Q)
    if m is not None and which == "denoise":
        h = h + w @ m
    h = jnp.where(nan_row, jnp.nan, h)
    if which == "denoise" and mix.noiseless:  # eta == 0 statically: no ambient term
        return h @ W.T
    kappa = _col(kappa)
    return (h - kappa * z) @ W.T + (kappa / _col(scale)) * x


@functools.partial(jax.jit, static_argnames=("which",))
@full_precision
def _compute(mix, x, sigma, scale, which):
    """The whole computation as one compiled program (validation happens outside)."""
    dtype = x.dtype
    # Traced sigma/scale escape the ValueError checks; where they are not positive and
    # finite the formulas (which see sigma^2) would give finite nonsense: NaN instead. A NaN
    # sigma makes every logit of its sample NaN, so its whole (B, K) log posterior row;
    # _assemble carries that to the (B, r) coordinates and the last product spreads it over
    # the output row. Done on sigma, () or (B,), it costs no pass over a (B, K) or larger
    # array (a select on the log posteriors cost 2-5% of the call, benchmarks/bench_core.py).
    sigma = jnp.where(valid_noise_level(sigma, scale), sigma, jnp.nan)
    analysed = _analyse(mix, x, sigma, scale, dtype)
    log_w = _log_softmax(analysed[0])
    if which == "log_posterior":
        return log_w
    if which == "denoise":
        return _assemble(mix, x, scale, analysed, log_w, "denoise"), log_w
    resid = _assemble(mix, x, scale, analysed, log_w, "noise")
    if which == "predict_noise":
        return resid / _col(sigma)
    return -resid / _col(scale * jnp.square(sigma))  # score


def log_posterior(mix: MoLRG, x_t, sigma, scale=1.0) -> Array:
    """``log p(k | x_t)`` for every class (log-sum-exp stable).

    Args:
      mix: the mixture.
      x_t: ``(..., n)`` noisy points, ``x_t = scale * (x_0 + sigma * eps)``.
      sigma: noise level, a scalar or one per sample (shape ``x_t.shape[:-1]``), > 0.
        Concrete values are checked (ValueError); where a traced value (inside
        ``jit``/``vmap``) is not positive and finite the sample's outputs are NaN.
      scale: signal scale ``s_t``, a scalar or one per sample, > 0 (traced: as ``sigma``).

    Returns:
      ``(..., K)`` log posterior probabilities, in ``x_t``'s dtype; NaN for the samples
      above and where the quadratic forms overflow (module docstring: accuracy and limits).
    """
    x, sig, sc, batch, _ = _prepare(mix, x_t, sigma, scale)
    return _compute(mix, x, sig, sc, "log_posterior").reshape(*batch, mix.K)


def posterior(mix: MoLRG, x_t, sigma, scale=1.0) -> Array:
    """``p(k | x_t)``, shape ``(..., K)``; see :func:`log_posterior` for the arguments."""
    return jnp.exp(log_posterior(mix, x_t, sigma, scale))


def denoise(mix: MoLRG, x_t, sigma, scale=1.0, *, return_posterior: bool = False):
    """The optimal (MMSE) denoiser ``E[x_0 | x_t]``.

    Args:
      mix: the mixture.
      x_t: ``(..., n)`` noisy points, ``x_t = scale * (x_0 + sigma * eps)``.
      sigma: a scalar or one value per sample, > 0; traced values that are not positive
        and finite give NaN for their samples (see :func:`log_posterior`).
      scale: a scalar or one value per sample, > 0 (traced: as ``sigma``).
      return_posterior: also return ``p(k | x_t)`` (computed on the way).

    Returns:
      ``(..., n)`` denoised points in ``x_t``'s dtype (and ``(..., K)`` posteriors); NaN
      rows as for :func:`log_posterior`.

    Example:
      >>> mix = random_molrg(jax.random.key(0), n=50, K=3, d=5, delta=0.2)
      >>> x0, _ = mix.sample(jax.random.key(1), 8)
      >>> xhat = denoise(mix, x0 + 0.5 * jax.random.normal(jax.random.key(2), x0.shape), 0.5)
    """
    x, sig, sc, batch, _ = _prepare(mix, x_t, sigma, scale)
    out, log_w = _compute(mix, x, sig, sc, "denoise")
    out = out.reshape(*batch, mix.n)
    if return_posterior:
        return out, jnp.exp(log_w).reshape(*batch, mix.K)
    return out


def predict_noise(mix: MoLRG, x_t, sigma, scale=1.0) -> Array:
    """The optimal noise prediction ``E[eps | x_t] = (x_t / s - E[x_0 | x_t]) / sigma``.

    Arguments and NaN rows as in :func:`denoise`; returns ``(..., n)``.
    """
    x, sig, sc, batch, _ = _prepare(mix, x_t, sigma, scale)
    return _compute(mix, x, sig, sc, "predict_noise").reshape(*batch, mix.n)


def score(mix: MoLRG, x_t, sigma, scale=1.0) -> Array:
    """The score ``grad_x log p_t(x_t) = (s E[x_0|x_t] - x_t) / (s^2 sigma^2)`` (Tweedie).

    Computed from the noise estimate directly (see the module docstring) rather than as
    a difference of nearly equal terms. Arguments as in :func:`denoise`; returns
    ``(..., n)``, with NaN rows where a traced sigma/scale is not positive and finite or
    the quadratic forms overflow.
    """
    x, sig, sc, batch, _ = _prepare(mix, x_t, sigma, scale)
    return _compute(mix, x, sig, sc, "score").reshape(*batch, mix.n)
