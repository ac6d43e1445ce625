"""The data model: a mixture of low-rank Gaussians (MoLRG), docs/theory.md section 2.

Class k has weight ``pi_k``, an orthonormal basis ``U_k`` (n x d_k) and a mean ``mu_k``;

    x_0 = mu_k + U_k a + delta * Ut_k e + eta * z,    a, e, z standard normal,

with ``Ut_k`` an orthonormal basis of the span of the *other* classes' bases, so
``x_0 | k ~ N(mu_k, Sigma_k)``, ``Sigma_k = U_k U_k^T + delta^2 Ut_k Ut_k^T + eta^2 I``.

Everything the exact formulas need lives in a small "frame": an orthonormal basis
``W`` (n x r) of the span of all bases and means, ``r <= sum_k d_k + K``. Inside the
frame each class covariance (less ``eta^2``) is ``Q_k diag(v_k) Q_k^T``; outside it
every class has the same isotropic covariance ``eta^2 I``. When the subspaces are
mutually orthogonal ``W`` is the stacked bases and ``Q_k = I``, with ``v_k`` constant
on each class block (1 on block k, delta^2 on the others): the "orthogonal" structure,
which needs no per-class rotation. :func:`geometry` computes the frame, traceably, so
``delta`` and ``noise`` can be traced (swept with ``vmap``).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from molrg._validate import check_int, check_key, check_positive, check_real, fail, is_concrete

Array = jax.Array

_STRUCTURES = ("orthogonal", "general")


def _float_dtype(*arrays) -> jnp.dtype:
    dt = jnp.result_type(*arrays) if arrays else jnp.float32
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.zeros((), dtype=float).dtype  # default float (float64 under x64)
    return dt


def _orthonormality_tol(dtype) -> float:
    return 1e-4 if jnp.finfo(dtype).bits <= 32 else 1e-8


@jax.tree_util.register_pytree_node_class
class MoLRG:
    """An immutable mixture of low-rank Gaussians, registered as a JAX pytree.

    Args:
      bases: ``(K, n, d)`` array, or a sequence of K arrays of shape ``(n, d_k)``,
        each with orthonormal columns.
      weights: ``(K,)`` positive class weights summing to 1; uniform when None.
      delta: off-class detail level (>= 0): class k carries ``delta``-scaled noise in
        the other classes' subspaces (P1, Assumption 1).
      noise: isotropic ambient standard deviation ``eta`` (>= 0).
      means: ``(K, n)`` class means, or None for zero means.
      structure: ``"orthogonal"`` or ``"general"``; detected from the bases when None.
        ``"orthogonal"`` (mutually orthogonal subspaces) takes a cheaper exact path.

    Attributes:
      n, K, dims (tuple of d_k), D (= sum d_k), bases (tuple of ``(n, d_k)``),
      stacked_bases (the bases side by side, ``(n, D)``; the form they are stored in),
      weights, delta, noise, means.

    Example:
      >>> mix = random_molrg(jax.random.key(0), n=50, K=3, d=5, delta=0.2)
      >>> x0, labels = mix.sample(jax.random.key(1), 1000)
    """

    # The bases are stored stacked, U = [U_1 ... U_K] (n, sum_k d_k), with the d_k static:
    # the posterior's two products use U itself, and a concatenation inside every compiled
    # call was measured to cost about 10-20% of the exact denoiser (bench_core.py timing).
    __slots__ = ("stacked_bases", "dims", "weights", "delta", "noise", "means", "structure",
                 "noiseless", "sharp")

    def __init__(self, bases, weights=None, delta=0.0, noise=0.0, means=None, *, structure=None,
                 _noiseless=None, _sharp=None):
        bases_t = _as_bases(bases)
        K = len(bases_t)
        n = int(bases_t[0].shape[0])
        dtype = _float_dtype(*bases_t)
        bases_t = tuple(jnp.asarray(b, dtype) for b in bases_t)

        for name, value in (("weights", weights), ("delta", delta), ("noise", noise), ("means", means)):
            if value is not None:
                check_real(name, value, allow_bool=False)
        if weights is None:
            weights = jnp.full((K,), 1.0 / K, dtype)
        elif np.shape(weights) != (K,):
            fail("weights", f"must have shape (K,) = ({K},), one per class; got shape {np.shape(weights)}")
        if np.shape(delta) != ():
            fail("delta", f"must be a scalar; got shape {np.shape(delta)}")
        if np.shape(noise) != ():
            fail("noise", f"must be a scalar; got shape {np.shape(noise)}")
        if means is not None and np.shape(means) != (K, n):
            fail("means", f"must have shape (K, n) = ({K}, {n}); got shape {np.shape(means)}")
        if structure is not None and structure not in _STRUCTURES:
            fail("structure", f"must be one of {_STRUCTURES} or None; got {structure!r}")

        check_positive("weights", weights)
        if is_concrete(weights):
            total = float(np.sum(np.asarray(weights, np.float64)))
            if abs(total - 1.0) > 1e-5:
                fail("weights", f"must sum to 1; they sum to {total:.8g}")
        check_positive("delta", delta, allow_zero=True)
        check_positive("noise", noise, allow_zero=True)
        if means is not None and is_concrete(means) and not np.all(np.isfinite(np.asarray(means))):
            fail("means", "must contain only finite values")

        detected = _check_bases_and_detect(bases_t, dtype)
        if structure is None:
            structure = detected or "general"
        elif structure == "orthogonal" and detected == "general":
            fail("structure", "'orthogonal' requested but the subspaces are not mutually orthogonal")

        self.stacked_bases = jnp.concatenate(bases_t, axis=1)
        self.dims = tuple(int(b.shape[1]) for b in bases_t)
        self.weights = jnp.asarray(weights, dtype)
        self.delta = jnp.asarray(delta, dtype)
        self.noise = jnp.asarray(noise, dtype)
        self.means = None if means is None else jnp.asarray(means, dtype)
        # Static: eta is known to be exactly 0, so the denoiser can skip the ambient term.
        if _noiseless is None:
            _noiseless = bool(is_concrete(noise) and float(np.asarray(noise)) == 0.0)
        object.__setattr__(self, "noiseless", _noiseless)
        # Static: delta is known to be exactly 0, so every class covariance is U_k U_k^T
        # (+ eta^2 I) whatever the angles between subspaces, and the exact posterior needs
        # only the projections U^T x (molrg.posterior: the low-rank path).
        if _sharp is None:
            _sharp = bool(is_concrete(delta) and float(np.asarray(delta)) == 0.0)
        object.__setattr__(self, "sharp", _sharp)
        self.structure = structure

    # -- immutability -------------------------------------------------------------
    def __setattr__(self, name, value):
        if hasattr(self, "structure") and name in self.__slots__:
            raise AttributeError("MoLRG is immutable; use MoLRG.replace(...)")
        object.__setattr__(self, name, value)

    def replace(self, **changes) -> "MoLRG":
        """A new mixture with some fields changed (validated again)."""
        fields = dict(bases=self.bases, weights=self.weights, delta=self.delta, noise=self.noise,
                      means=self.means)
        fields.update(changes)
        keep = {} if "noise" in changes else {"_noiseless": self.noiseless}
        if "delta" not in changes:
            keep["_sharp"] = self.sharp
        if "bases" in changes:
            return MoLRG(**fields, **keep)
        return MoLRG(**fields, structure=self.structure, **keep)

    # -- pytree ---------------------------------------------------------------------
    def tree_flatten(self):
        children = (self.stacked_bases, self.weights, self.delta, self.noise, self.means)
        return children, (self.structure, self.noiseless, self.sharp, self.dims)

    @classmethod
    def tree_unflatten(cls, aux, children):
        structure, noiseless, sharp, dims = aux
        obj = object.__new__(cls)
        for name, value in zip(("stacked_bases", "weights", "delta", "noise", "means"), children):
            object.__setattr__(obj, name, value)
        object.__setattr__(obj, "dims", dims)
        object.__setattr__(obj, "noiseless", noiseless)
        object.__setattr__(obj, "sharp", sharp)
        object.__setattr__(obj, "structure", structure)
        return obj

    # -- shape facts ------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.stacked_bases.shape[0])

    @property
    def K(self) -> int:
        return len(self.dims)

    @property
    def bases(self) -> tuple:
        """The class bases ``U_k``, a tuple of K ``(n, d_k)`` arrays (slices of
        :attr:`stacked_bases`)."""
        U, out, start = self.stacked_bases, [], 0
        for d in self.dims:
            out.append(U[..., start:start + d])
            start += d
        return tuple(out)

    @property
    def D(self) -> int:
        return sum(self.dims)

    @property
    def dtype(self):
        return self.stacked_bases.dtype

    @property
    def class_of_column(self) -> np.ndarray:
        """For each column of :attr:`stacked_bases`, the class it belongs to (static)."""
        return np.repeat(np.arange(self.K), self.dims)

    def __repr__(self) -> str:
        means = "None" if self.means is None else f"<({self.K}, {self.n}) array>"
        if is_concrete(self.weights):
            shown = ", ".join(f"{float(w):.4g}" for w in np.asarray(self.weights)[:8])
            weights = f"({shown}{', ...' if self.K > 8 else ''})"
        else:
            weights = "<traced>"
        return (f"MoLRG(n={self.n}, K={self.K}, dims={self.dims}, weights={weights}, "
                f"delta={_fmt(self.delta)}, noise={_fmt(self.noise)}, means={means}, "
                f"structure={self.structure!r}, dtype={np.dtype(self.dtype).name})")

    # -- sampling ---------------------------------------------------------------------
    def sample(self, key: Array, num: int) -> tuple[Array, Array]:
        """Draws ``num`` samples.

        Args:
          key: a PRNG key: ``jax.random.key(seed)`` or a legacy uint32 ``(2,)`` key.
          num: number of samples (static).

        Returns:
          ``(x0, labels)`` with shapes ``(num, n)`` and ``(num,)`` (int32).
        """
        check_key("key", key)
        num = check_int("num", num)
        return _sample_jit(self, key, num)


def _fmt(v) -> str:
    return f"{float(v):g}" if is_concrete(v) else "<traced>"


def _as_bases(bases) -> tuple:
    if isinstance(bases, (list, tuple)):
        if len(bases) == 0:
            fail("bases", "must hold at least one class basis")
        out = tuple(bases)
    else:
        check_real("bases", bases, allow_bool=False)
        arr = bases
        if np.ndim(arr) != 3:
            fail("bases", f"must be a (K, n, d) array or a list of (n, d_k) arrays; got shape {np.shape(arr)}")
        if np.shape(arr)[0] == 0:
            fail("bases", "must hold at least one class basis")
        out = tuple(arr[k] for k in range(np.shape(arr)[0]))
    n = None
    for k, b in enumerate(out):
        check_real(f"bases (class {k})", b, allow_bool=False)
        shape = np.shape(b)
        if len(shape) != 2:
            fail("bases", f"class {k} basis must be 2-D (n, d_k); got shape {shape}")
        if n is None:
            n = shape[0]
        if shape[0] != n:
            fail("bases", f"all bases must have the same number of rows n; class 0 has {n}, class {k} has {shape[0]}")
        if shape[1] < 1:
            fail("bases", f"class {k} basis must have at least one column (d_k >= 1)")
        if shape[1] > shape[0]:
            fail("bases", f"class {k} has d_k = {shape[1]} > n = {shape[0]}; need d_k <= n")
    return out


def _check_bases_and_detect(bases, dtype) -> str | None:
    """Checks orthonormal columns; returns the detected structure (None if traced)."""
    if not is_concrete(bases):
        return None
    arrs = [np.asarray(b, np.float64) for b in bases]
    tol = _orthonormality_tol(dtype)
    for k, b in enumerate(arrs):
        if not np.all(np.isfinite(b)):
            fail("bases", f"class {k} basis contains non-finite values")
        err = np.max(np.abs(b.T @ b - np.eye(b.shape[1])))
        if err > tol:
            fail("bases", f"class {k} basis must have orthonormal columns (U^T U = I); max |U^T U - I| = {err:.2e} > {tol:g}")
    U = np.concatenate(arrs, axis=1)
    if U.shape[1] > U.shape[0]:
        return "general"
    err = np.max(np.abs(U.T @ U - np.eye(U.shape[1])))
    return "orthogonal" if err <= tol else "general"


# --------------------------------------------------------------------------------------
# The frame: what the exact formulas need, computed traceably.
# --------------------------------------------------------------------------------------
class Geometry(NamedTuple):
    """Class covariances in a small orthonormal frame.

    Attributes:
      frame: ``(n, r)`` orthonormal ``W``; all bases and means lie in its span.
      rotations: ``(K, r, r)`` per-class eigenvectors ``Q_k`` (columns), or None when
        the frame already diagonalises every class (orthogonal structure).
      variances: ``(K, G)`` class variances (without ``eta^2``) on each of G groups of
        frame coordinates.
      group_sizes: static tuple of G group sizes, summing to r.
      mean_coords: ``(K, r)`` means in frame coordinates (in the rotated coordinates
        they are ``mean_coords[k] @ Q_k``), or None for zero means.
    """

    frame: Array
    rotations: Array | None
    variances: Array
    group_sizes: tuple[int, ...]
    mean_coords: Array | None


def geometry(mix: MoLRG, dtype=None) -> Geometry:
    """The frame decomposition of ``mix`` (see the module docstring); traceable."""
    dtype = dtype or mix.dtype
    U = mix.stacked_bases.astype(dtype)
    delta2 = jnp.square(mix.delta.astype(dtype))
    K, D, n = mix.K, mix.D, mix.n
    cls = mix.class_of_column

    if mix.structure == "orthogonal":
        frame = U
        if mix.means is not None:
            # Extra orthonormal columns for the means' part outside span(U): QR of [U, M]
            # keeps them orthogonal to U even when the means lie in span(U).
            extra = min(K, n - D)
            if extra > 0:
                q, _ = jnp.linalg.qr(jnp.concatenate([U, mix.means.astype(dtype).T], axis=1))
                frame = jnp.concatenate([U, q[:, D:D + extra]], axis=1)
        eye = jnp.eye(K, dtype=dtype)
        variances = eye + delta2 * (1 - eye)  # 1 on own block, delta^2 on the others
        sizes = mix.dims
        if frame.shape[1] > D:
            variances = jnp.concatenate([variances, jnp.zeros((K, 1), dtype)], axis=1)
            sizes = sizes + (frame.shape[1] - D,)
        mean_coords = None if mix.means is None else mix.means.astype(dtype) @ frame
        return Geometry(frame, None, variances, sizes, mean_coords)

    # General structure: frame = orthonormal basis of span([U, means]).
    cols = U if mix.means is None else jnp.concatenate([U, mix.means.astype(dtype).T], axis=1)
    frame, _ = jnp.linalg.qr(cols)  # (n, min(n, D[+K]))
    r = frame.shape[1]
    coords = frame.T @ U  # (r, D): every basis in frame coordinates
    eps = jnp.finfo(dtype).eps
    covs = []
    for k in range(K):
        own = coords[:, cls == k]
        others = coords * jnp.asarray(cls != k, dtype)[None, :]
        # Projector onto span of the other classes' bases (rank found by threshold).
        gram = others @ others.T
        lam, vec = jnp.linalg.eigh(gram)
        keep = (lam > 10 * r * eps * jnp.maximum(lam[-1], 1.0)).astype(dtype)
        proj = (vec * keep[None, :]) @ vec.T
        covs.append(own @ own.T + delta2 * proj)
    covs = jnp.stack(covs)
    variances, rotations = jnp.linalg.eigh(covs)  # (K, r), (K, r, r), ascending
    # Class k's covariance has rank at most d_k when delta = 0 (statically) and at most D
    # otherwise, so its smallest r - d_k (r - D) eigenvalues are exactly zero; eigh returns
    # them as rounding noise of size ~eps (1e-7 in float32), which next to sigma^2 = 1e-8
    # would keep 90% of the noise in those directions and add log1p(v / c) ~ 2 nats to the
    # class's log-determinant. Set them to the zero they are.
    rank = np.asarray(mix.dims) if mix.sharp else np.full(K, D)
    structural_zero = np.arange(r)[None, :] < (r - rank)[:, None]  # (K, r), static
    variances = jnp.where(structural_zero, 0.0, jnp.maximum(variances, 0.0))
    mean_coords = None if mix.means is None else mix.means.astype(dtype) @ frame
    return Geometry(frame, rotations, variances, (1,) * r, mean_coords)


def _sample(mix: MoLRG, key: Array, num: int) -> tuple[Array, Array]:
    dtype = mix.dtype
    geo = geometry(mix, dtype)
    k_lab, k_coef, k_iso = jax.random.split(key, 3)
    labels = jax.random.categorical(k_lab, jnp.log(mix.weights), shape=(num,)).astype(jnp.int32)
    r = geo.frame.shape[1]
    sizes = np.asarray(geo.group_sizes)
    std = jnp.sqrt(jnp.repeat(geo.variances, sizes, axis=1, total_repeat_length=r))  # (K, r)
    # flat draws: 2-D random draws compile ~10x slower on CPU
    coef = jax.random.normal(k_coef, (num * r,), dtype).reshape(num, r) * std[labels]
    if geo.rotations is not None:
        coef = jnp.einsum("bj,bij->bi", coef, geo.rotations[labels])
    x0 = coef @ geo.frame.T
    if geo.mean_coords is not None:
        x0 = x0 + mix.means[labels]
    x0 = x0 + mix.noise * jax.random.normal(k_iso, (num * mix.n,), dtype).reshape(num, mix.n)
    return x0, labels


_sample_jit = jax.jit(_sample, static_argnums=2)


# --------------------------------------------------------------------------------------
# Constructors.
# --------------------------------------------------------------------------------------
def _check_float_dtype(dtype):
    """A floating dtype (default: JAX's default float); complex would make complex bases."""
    if dtype is None:
        return jnp.zeros((), dtype=float).dtype
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or not jnp.issubdtype(dt, jnp.floating):
        fail("dtype", f"must be a real floating dtype such as jnp.float32; got {dtype!r}")
    return dt


def _random_orthonormal(key, n, d, dtype):
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, d), dtype))
    return q * jnp.sign(jnp.diagonal(r))[None, :]


def random_molrg(key: Array, *, n: int, K: int, d: int | Sequence[int], delta: float = 0.0,
                 noise: float = 0.0, weights=None, angle: float | None = None,
                 means=None, dtype=None) -> MoLRG:
    """A random MoLRG.

    Args:
      key: PRNG key.
      n: ambient dimension.
      K: number of classes.
      d: subspace dimension, an int or one per class.
      delta, noise, weights, means: as in :class:`MoLRG`.
      angle: None for mutually orthogonal subspaces (random orthonormal blocks);
        otherwise every pair of subspaces has all d principal angles equal to
        ``angle`` degrees (0 < angle <= 90); needs equal dims and ``n >= d (K + 1)``.
      dtype: floating dtype of the bases (default: JAX's default float).

    With ``angle``, class k's basis is ``cos(theta') C + sin(theta') E_k`` where ``C``
    (shared) and ``E_k`` are mutually orthogonal orthonormal ``(n, d)`` blocks; then
    ``U_k^T U_l = cos^2(theta') I`` and all principal angles equal ``theta`` when
    ``cos(theta) = cos^2(theta')``. Needs ``n >= d (K + 1)``.
    """
    check_key("key", key)
    dtype = _check_float_dtype(dtype)
    n = check_int("n", n)
    K = check_int("K", K)
    if isinstance(d, (list, tuple)):
        dims = tuple(check_int("d", v, lo=None) for v in d)
    else:
        arr = np.asarray(d)
        if arr.dtype.kind not in "iu" or arr.ndim > 1:
            fail("d", f"must be an integer or a sequence of integers, one per class; got {d!r}")
        dims = (int(arr),) * K if arr.ndim == 0 else tuple(int(v) for v in arr)
    if len(dims) != K:
        fail("d", f"must be an int or have one entry per class (K = {K}); got {len(dims)}")
    if min(dims) < 1:
        fail("d", f"every subspace dimension must be >= 1; got {dims}")
    if angle is None:
        if sum(dims) > n:
            fail("d", f"mutually orthogonal subspaces need sum(d) <= n; sum(d) = {sum(dims)} > n = {n}")
        q = _random_orthonormal(key, n, sum(dims), dtype)
        bases = list(jnp.split(q, np.cumsum(dims)[:-1], axis=1))
        # Orthogonal by construction: say so, so that a traced key (inside jit/vmap, where
        # the structure cannot be detected) still gets the fast orthogonal path.
        return MoLRG(bases, weights=weights, delta=delta, noise=noise, means=means,
                     structure="orthogonal")
    else:
        check_real("angle", angle, allow_bool=False)
        if np.ndim(angle) != 0 or not (0.0 < float(angle) <= 90.0):
            fail("angle", f"must be in (0, 90] degrees; got {angle!r}")
        if len(set(dims)) != 1:
            fail("angle", "needs equal subspace dimensions d for every class")
        dd = dims[0]
        if dd * (K + 1) > n:
            fail("angle", f"needs n >= d (K + 1) = {dd * (K + 1)}; got n = {n}")
        q = _random_orthonormal(key, n, dd * (K + 1), dtype)
        shared, rest = q[:, :dd], q[:, dd:]
        c = np.sqrt(np.cos(np.deg2rad(float(angle))))  # cos(theta') with cos^2(theta') = cos(theta)
        s = np.sqrt(1.0 - c * c)
        bases = [c * shared + s * rest[:, k * dd:(k + 1) * dd] for k in range(K)]
    return MoLRG(bases, weights=weights, delta=delta, noise=noise, means=means)


def separated_means(key: Array, *, n: int, K: int, radius: float, dtype=None) -> Array:
    """``(K, n)`` random means with norm ``radius`` each, pairwise orthogonal when K <= n.

    Used for P1's "well-separated clusters" relaxation.
    """
    check_key("key", key)
    dtype = _check_float_dtype(dtype)
    n = check_int("n", n)
    K = check_int("K", K)
    if K > n:
        fail("K", f"pairwise orthogonal means need K <= n; got K = {K}, n = {n}")
    check_positive("radius", radius)
    return radius * _random_orthonormal(key, n, K, dtype).T


def paper_molrg(key: Array, *, n: int = 50, K: int = 3, d: int = 5, delta: float = 0.2,
                dtype=None) -> MoLRG:
    """P1's Assumption-1 model (defaults: the Fig. 3 setting K=3, n=50, d=5, delta=0.2)."""
    return random_molrg(key, n=n, K=K, d=d, delta=delta, dtype=dtype)
