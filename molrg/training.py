"""Training denoisers on MoLRG data and comparing them with the optimum (docs/theory.md section 4).

The denoising loss (P1; no per-level weighting)

    L(theta) = E_{x_0, (sigma, s), eps} || x_theta(s (x_0 + sigma eps), sigma, s) - x_0 ||^2

(squared error summed over coordinates, averaged over the batch, or a weighted average
``sum_b w_b l_b / sum_b w_b`` with per-sample ``weights``: weight 0 = a padding row that
counts nothing), with ``(sigma, s)`` drawn by a noise distribution: :class:`DDPMNoise` (uniform integer ``t`` in
``[0, T-1]`` of P1's linear DDPM schedule) or the continuous VE options
:class:`LogNormalNoise` (EDM) and :class:`LogUniformNoise` (``s = 1``), all defined in :mod:`molrg.schedules` (re-exported here).

Training is one program: :func:`fit` is the pure, traceable run (a ``lax.scan`` over
steps; call it under ``jit``/``vmap``, e.g. inside a sweep's point function), and
:func:`train` / :func:`train_ensemble` are its compiled (and vmapped) drivers, with
evaluation: a scan over segments of ``eval_every`` steps whose body is a scan over steps
followed by an evaluation. All randomness of step ``i`` is a function of ``(key, i)``
only, ``key = jax.random.key(seed)`` for :func:`train`::

    base = key;  init key = fold_in(base, 0)
    minibatch:  epoch e = i // (N // B) takes permutation(fold_in(fold_in(base, 1), e)),
                position i % (N // B) takes its next B indices (the last N mod B
                samples of each epoch's permutation are dropped), or, with a MoLRG as
                data, B fresh samples from fold_in(fold_in(base, 1), i); full batch
                (``batch_size=None``): every step takes all N rows in order;
    noise:      a (B, n + 1) standard normal from fold_in(fold_in(base, 2), i): eps and,
                by inverse transform of the last column, t or sigma.

So a run is deterministic per seed, and resuming at step ``i`` needs only the
parameters, the optimiser state and ``i`` (:func:`molrg.checkpoint.save_checkpoint` /
:func:`molrg.checkpoint.load_checkpoint`): N steps in one go equal N/2 + checkpoint + N/2.

The optimiser is an optax factory wrapped in ``optax.inject_hyperparams``, so the
learning rate lives in the optimiser state: one program serves every learning rate. An
optional ``schedule(i)`` multiplies the optimiser's update at step ``i`` (for optax's
optimisers that end in a learning-rate scaling -- adam, sgd, adamw, ... -- the learning
rate of step ``i`` is then ``learning_rate * schedule(i)``, e.g.
``optax.cosine_decay_schedule(1.0, steps, alpha=1e-3)``),
and :func:`train_ensemble` vmaps the whole run over seeds and learning rates (and,
with several devices, shards that ensemble axis with ``jax.shard_map`` over a
``Mesh`` axis named ``"ensemble"``).

Evaluation (every ``eval_every`` steps, and once at the start) on a fixed eval set of
the true mixture at fixed noise levels: the network's MSE per level, the Bayes MSE of
:func:`molrg.denoise` on the same noisy points, their difference (excess MSE), and for
networks with learned subspaces (a ``bases(params)`` method) the normalised subspace
error of :mod:`molrg.subspaces`, ``sqrt(min_pi sum_l ||P^_pi(l) - P*_l||_F^2 / (2 K d))``
in [0, 1] (pair errors computed in the program, blocks matched on the host), with the
principal angles of each matched pair.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from molrg import subspaces
from molrg._validate import check_positive, fail, is_concrete
from molrg.mixture import MoLRG
from molrg.posterior import denoise
from molrg.schedules import DDPMNoise, LogNormalNoise, LogUniformNoise

Array = jax.Array

__all__ = [
    "DDPMNoise",
    "LogNormalNoise",
    "LogUniformNoise",
    "TrainResult",
    "denoising_loss",
    "fit",
    "optimizer",
    "train",
    "train_ensemble",
]


_NOISES = (DDPMNoise, LogNormalNoise, LogUniformNoise)


# ----------------------------------------------------------------------------------------
# The loss.
# ----------------------------------------------------------------------------------------
def _col(v):
    return v if v.ndim == 0 else v[:, None]


def _normal(key, shape, dtype):
    """``jax.random.normal`` drawn flat, then reshaped (same values as a flat draw).

    XLA on CPU compiles multi-dimensional threefry draws several times slower than flat
    ones (measured: (14, 512, 10) 4.6 s vs (71680,) 0.4 s), so every draw here is flat.
    """
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def denoising_loss(net, params, x0: Array, sigma, scale, eps: Array, weights=None) -> Array:
    """``mean_b || x_theta(s_b (x0_b + sigma_b eps_b)) - x0_b ||^2`` (summed over coordinates).

    With ``weights``, the weighted mean ``sum_b w_b l_b / sum_b w_b`` of the per-sample
    losses ``l_b``: a row of weight 0 (padding) contributes exactly nothing to the loss or
    its gradient; a batch of total weight 0 has loss 0.

    Args:
      net: a network of :mod:`molrg.networks`.
      params: its parameters.
      x0: ``(B, n)`` clean samples.
      sigma, scale: scalars or ``(B,)``.
      eps: ``(B, n)`` standard normal noise.
      weights: optional ``(B,)`` non-negative per-sample weights.

    Returns:
      The scalar loss.
    """
    if np.shape(eps) != np.shape(x0):
        fail("eps", f"must have the shape of x0 {np.shape(x0)}; got {np.shape(eps)}")
    if weights is not None and np.shape(weights) != np.shape(x0)[:1]:
        fail("weights", f"must have shape {np.shape(x0)[:1]} (one per sample); got {np.shape(weights)}")
    sig = jnp.asarray(sigma).astype(x0.dtype)
    sc = jnp.asarray(scale).astype(x0.dtype)
    x_t = _col(sc) * (x0 + _col(sig) * eps)
    pred = net.apply(params, x_t, sig, sc)
    per_sample = jnp.sum(jnp.square(pred - x0), axis=-1)
    if weights is None:
        return jnp.mean(per_sample)
    w = jnp.asarray(weights).astype(x0.dtype)
    total = jnp.sum(w)
    return jnp.sum(w * per_sample) / jnp.where(total > 0, total, jnp.ones_like(total))


# ----------------------------------------------------------------------------------------
# The compiled program.
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything static about a run (hashable: a jit static argument)."""

    net: Any
    optimizer: Callable
    noise: Any
    steps: int
    batch_size: int | None  # None: full batch (every step takes all rows, in order)
    eval_every: int  # 0: no evaluation
    fresh: bool  # data is a MoLRG (fresh samples) rather than a fixed training set
    subspace: bool  # evaluation includes the subspace error
    schedule: Callable | None = None  # schedule(step) multiplies the optimiser's update


class _EvalSet(NamedTuple):
    x0: Array  # (J * M, n), the eval samples tiled once per level
    x_t: Array  # (J * M, n)
    sigma: Array  # (J * M,)
    scale: Array  # (J * M,)
    true_bases: Array | None  # (K, n, d)


def optimizer(factory: Callable = optax.adam, learning_rate=5e-4) -> optax.GradientTransformation:
    """The optimiser :func:`train` builds from an optax ``factory``: only its learning rate injected.

    ``optax.inject_hyperparams`` keeps the learning rate in the optimiser state (a state
    array, so one program serves every rate and ensembles vmap over it); the factory's other
    numeric arguments (Adam's b1, b2, eps) stay fixed Python constants. Use it to make the
    ``opt_state`` template of :func:`molrg.checkpoint.load_checkpoint`:
    ``jax.eval_shape(optimizer(optax.adam).init, params)``.
    """

    def learning_rate_only(learning_rate):
        return factory(learning_rate=learning_rate)

    return optax.inject_hyperparams(learning_rate_only)(learning_rate=learning_rate)


def _optimizer(plan, learning_rate):
    return optimizer(plan.optimizer, learning_rate)


def _seed_key(seed):
    return jax.random.key(seed)


def _init_key(seed):
    return jax.random.fold_in(_seed_key(seed), 0)


def _evaluate(plan: _Plan, params, ev: _EvalSet, num_levels: int) -> dict:
    pred = plan.net.apply(params, ev.x_t, ev.sigma, ev.scale)
    err = jnp.sum(jnp.square(pred - ev.x0), axis=-1).reshape(num_levels, -1)
    out = {"net_mse": jnp.mean(err, axis=-1)}
    if plan.subspace:
        true = ev.true_bases  # (K, n, d)
        K, n, d = true.shape
        u = plan.net.bases(params)
        learned = jnp.transpose(u.reshape(n, K, d), (1, 0, 2))  # (K, n, d)
        out["pair_error"] = subspaces.pair_errors(learned, true)  # (K, K)
        out["pair_cosines"] = subspaces.pair_cosines(learned, true)  # (K, K, d)
        # The stacked span: one block of dimension K d, no matching.
        ustar = true.transpose(1, 0, 2).reshape(n, K * d)
        out["stacked_error"] = jnp.sqrt(subspaces.pair_errors(u[None], ustar[None])[0, 0])
    return out


def _program(plan: _Plan, data, weights, base, params, opt_state, start_step, evalset, num_levels):
    """The whole run from the PRNG key ``base``; returns (params, opt_state, losses (steps,),
    evals dict or None)."""
    net = plan.net
    opt = _optimizer(plan, 0.0)  # the learning rate used is the one in opt_state
    k_data = jax.random.fold_in(base, 1)
    k_noise = jax.random.fold_in(base, 2)
    perm0 = None
    if plan.fresh:
        dtype, n = data.dtype, data.n
        B = plan.batch_size
    else:
        dtype, (N, n) = data.dtype, data.shape
        B = N if plan.batch_size is None else plan.batch_size
        per_epoch = N // B
        if plan.batch_size is not None:
            perm0 = jax.random.permutation(jax.random.fold_in(k_data, start_step // per_epoch), N)

    def minibatch(perm, i):
        if plan.fresh:
            x0, _ = data.sample(jax.random.fold_in(k_data, i), B)
            return x0.astype(dtype), None, perm
        if plan.batch_size is None:
            return data, weights, perm
        epoch, pos = i // per_epoch, i % per_epoch
        # The run's first epoch permutation is perm0 (drawn before the loop, as a run may
        # start mid-epoch); drawing it again at step `start` cost a second sort of N keys
        # per seed (measured: ~10% of a 200-step, 16-seed MLP ensemble on CPU).
        perm = lax.cond((pos == 0) & (i != jnp.asarray(start_step, jnp.int32)),
                        lambda: jax.random.permutation(jax.random.fold_in(k_data, epoch), N),
                        lambda: perm)
        idx = lax.dynamic_slice(perm, (pos * B,), (B,))
        return data[idx], None if weights is None else weights[idx], perm

    def loss_fn(p, x0, w, sigma, scale, eps):
        return denoising_loss(net, p, x0, sigma, scale, eps, w)

    def step(carry, i):
        p, state, perm = carry
        x0, w, perm = minibatch(perm, i)
        # One draw per step: n noise coordinates and one normal for the noise level
        # (inverse transform), so each step has a single PRNG call site -- XLA's compile
        # time grows with every threefry call inlined in the loop body. Drawn flat and
        # reshaped: multi-dimensional threefry draws compile several times slower on CPU.
        z = _normal(jax.random.fold_in(k_noise, i), (B, n + 1), dtype)
        eps = z[:, :n]
        sigma, scale = plan.noise.from_normal(z[:, n])
        loss, grads = jax.value_and_grad(loss_fn)(p, x0, w, sigma, scale, eps)
        # optax's Adam computes ``b1 ** count`` (float ** int32): allow standard promotion
        # inside the optimiser and the schedule only (the project runs with strict promotion).
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(grads, state, p)
            if plan.schedule is not None:
                factor = jnp.asarray(plan.schedule(i))
                updates = jax.tree.map(lambda u: u * factor.astype(u.dtype), updates)
        p = optax.apply_updates(p, updates)
        return (p, state, perm), loss

    carry = (params, opt_state, perm0)
    start = jnp.asarray(start_step, jnp.int32)
    if not plan.eval_every:
        carry, losses = lax.scan(step, carry, start + jnp.arange(plan.steps, dtype=jnp.int32))
        return carry[0], carry[1], losses, None

    E = plan.eval_every

    def segment(carry, seg):
        first = start + seg * E
        carry, losses = lax.scan(step, carry, first + jnp.arange(E, dtype=jnp.int32))
        return carry, (losses, _evaluate(plan, carry[0], evalset, num_levels))

    ev0 = _evaluate(plan, params, evalset, num_levels)
    carry, (losses, evs) = lax.scan(segment, carry, jnp.arange(plan.steps // E, dtype=jnp.int32))
    evs = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), ev0, evs)
    return carry[0], carry[1], losses.reshape(-1), evs


def _seeded_program(plan: _Plan, data, weights, seed, params, opt_state, start_step, evalset,
                    num_levels):
    return _program(plan, data, weights, _seed_key(seed), params, opt_state, start_step, evalset,
                    num_levels)


_single_program = jax.jit(_seeded_program, static_argnums=(0, 8))


@functools.lru_cache(maxsize=32)
def _ensemble_program(plan: _Plan, num_levels: int, devices: tuple | None):
    fn = jax.vmap(functools.partial(_seeded_program, plan),
                  in_axes=(None, None, 0, 0, 0, None, None, None))

    def run(data, weights, seeds, params, opt_state, start_step, evalset):
        return fn(data, weights, seeds, params, opt_state, start_step, evalset, num_levels)

    if devices is None:
        return jax.jit(run), None
    mesh = Mesh(np.asarray(devices), ("ensemble",))
    ens, rep = P("ensemble"), P()
    sharded = jax.shard_map(run, mesh=mesh, in_specs=(rep, rep, ens, ens, ens, rep, rep),
                            out_specs=ens, check_vma=False)
    return jax.jit(sharded), mesh


# ----------------------------------------------------------------------------------------
# Public entry points.
# ----------------------------------------------------------------------------------------
class TrainResult(NamedTuple):
    """What :func:`train` / :func:`train_ensemble` return (ensemble: a leading E axis).

    Attributes:
      params: final parameters.
      opt_state: final optimiser state (holds the learning rate).
      step: the step count reached (``start_step + steps``), a Python int.
      losses: ``(steps,)`` training loss of every step.
      evals: None, or a dict of NumPy arrays over the ``S + 1`` evaluations (at
        ``start_step`` and every ``eval_every`` steps after):
        ``"step"`` (S+1,), ``"train_loss"`` (S+1,) mean training loss of the preceding
        segment (NaN at the start), ``"sigma"``, ``"scale"``, ``"bayes_mse"`` (J,) per
        evaluation level, ``"net_mse"``, ``"excess_mse"`` (S+1, J), ``"eval_loss"``
        (S+1,) the mean of ``net_mse`` over the levels; with learned subspaces also
        ``"subspace_error"`` (S+1,) the normalised matched error of
        :func:`molrg.subspaces.subspace_error` (in [0, 1]), ``"stacked_error"`` (S+1,)
        ``||U^ U^^T - U* U*^T||_F`` (unnormalised; no matching needed),
        ``"principal_angles"`` (S+1, K, d) radians, ascending, of the learned block
        matched to true block l, ``"block_match"`` (S+1, K) the learned block matched
        to true block l.
    """

    params: Any
    opt_state: Any
    step: int
    losses: Array
    evals: dict | None


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        fail(name, f"must be an integer >= {minimum}; got {value!r}")


def _check_net(net):
    if not (hasattr(net, "init") and hasattr(net, "apply") and hasattr(net, "n")):
        fail("net", f"must be a molrg.networks network (init/apply/n); got {type(net).__name__}")
    try:
        hash(net)
    except TypeError:
        fail("net", "must be hashable (a frozen dataclass)")


def _check_common(net, data, steps, batch_size, eval_every, noise, optimizer, start_step, mix,
                  weights=None, schedule=None):
    _check_net(net)
    if isinstance(data, MoLRG):
        if data.n != net.n:
            fail("data", f"mixture dimension n = {data.n} must equal the network's n = {net.n}")
    else:
        shape = np.shape(data)
        if len(shape) != 2 or shape[1] != net.n:
            fail("data", f"must be a MoLRG or a (N, n = {net.n}) training set; got shape {shape}")
        if not jnp.issubdtype(jnp.asarray(data).dtype, jnp.floating):
            fail("data", f"must be a floating array; got dtype {jnp.asarray(data).dtype}")
        if is_concrete(data) and not np.all(np.isfinite(np.asarray(data))):
            fail("data", "must contain only finite values")
    _check_int("steps", steps, 1)
    if batch_size is None:
        if isinstance(data, MoLRG):
            fail("batch_size", "must be an integer with a MoLRG as data (None = full batch needs a training set)")
    else:
        _check_int("batch_size", batch_size, 1)
    _check_int("start_step", start_step, 0)
    if batch_size is not None and not isinstance(data, MoLRG) and np.shape(data)[0] < batch_size:
        fail("batch_size", f"must be <= the number of training samples {np.shape(data)[0]}; got {batch_size}")
    if weights is not None:
        if isinstance(data, MoLRG):
            fail("weights", "need a training set as data (a MoLRG draws fresh samples)")
        if np.shape(weights) != np.shape(data)[:1]:
            fail("weights", f"must have shape {np.shape(data)[:1]} (one per training sample); got "
                 f"{np.shape(weights)}")
        if not jnp.issubdtype(jnp.asarray(weights).dtype, jnp.floating):
            fail("weights", f"must be a floating array; got dtype {jnp.asarray(weights).dtype}")
        check_positive("weights", weights, allow_zero=True)
    if schedule is not None and not callable(schedule):
        fail("schedule", "must be None or a function of the step index (an optax schedule)")
    if eval_every is not None:
        _check_int("eval_every", eval_every, 1)
        if steps % eval_every:
            fail("eval_every", f"must divide steps = {steps}; got {eval_every}")
        if mix is None and not isinstance(data, MoLRG):
            fail("mix", "the true mixture is needed for evaluation (Bayes MSE); pass mix=")
    if mix is not None and not isinstance(mix, MoLRG):
        fail("mix", f"must be a molrg.MoLRG or None; got {type(mix).__name__}")
    if mix is not None and mix.n != net.n:
        fail("mix", f"dimension n = {mix.n} must equal the network's n = {net.n}")
    if not isinstance(noise, _NOISES):
        fail("noise", f"must be one of {[c.__name__ for c in _NOISES]}; got {type(noise).__name__}")
    if not callable(optimizer):
        fail("optimizer", "must be an optax optimiser factory taking learning_rate (e.g. optax.adam)")


def _has_subspaces(net, mix) -> bool:
    if mix is None or not hasattr(net, "bases") or not hasattr(net, "K"):
        return False
    return mix.K == net.K and all(dk == net.d for dk in mix.dims)


@functools.partial(jax.jit, static_argnums=(2,))
def _draw_evalset(mix, key, num, sigma, scale):
    """x0 (M, n) and x_t (J, M, n) at the levels, as one compiled program (eager sampling
    would compile every small op for each new M)."""
    k_x, k_eps = jax.random.split(key)
    x0, _ = mix.sample(k_x, num)
    eps = _normal(k_eps, (sigma.shape[0], num, mix.n), x0.dtype)
    x_t = scale[:, None, None] * (x0[None] + sigma[:, None, None] * eps)
    return x0, x_t


def _make_evalset(net, mix, noise, eval_levels, eval_size, eval_seed, dtype, subspace):
    if eval_levels is None:
        sig, sc = noise.eval_levels()
    else:
        if not (isinstance(eval_levels, (tuple, list)) and len(eval_levels) == 2):
            fail("eval_levels", "must be a pair (sigmas, scales)")
        sig, sc = eval_levels
    sig = np.asarray(sig, np.float64).reshape(-1)
    if np.size(sc) not in (1, sig.size):
        fail("eval_levels", f"scales must be a scalar or one per sigma ({sig.size}); got {np.shape(sc)}")
    sc = np.broadcast_to(np.asarray(sc, np.float64).reshape(-1), sig.shape).copy()
    check_positive("eval_levels", sig)
    check_positive("eval_levels", sc)
    _check_int("eval_size", eval_size, 1)
    J, M, n = sig.size, eval_size, net.n
    mdt = mix.dtype
    x0, x_t = _draw_evalset(mix, jax.random.key(eval_seed), M, jnp.asarray(sig, mdt), jnp.asarray(sc, mdt))
    x_t = x_t.reshape(J * M, n)
    sig_rep, sc_rep = np.repeat(sig, M), np.repeat(sc, M)
    x0_rep = jnp.tile(x0, (J, 1))
    den = denoise(mix, x_t, jnp.asarray(sig_rep, mdt), jnp.asarray(sc_rep, mdt))
    err = np.sum((np.asarray(den, np.float64) - np.asarray(x0_rep, np.float64)) ** 2, axis=-1)
    bayes = err.reshape(J, M).mean(-1)
    true = None
    if subspace:
        true = jnp.stack([b.astype(dtype) for b in mix.bases])
    ev = _EvalSet(x0=x0_rep.astype(dtype), x_t=x_t.astype(dtype),
                  sigma=jnp.asarray(sig_rep, dtype), scale=jnp.asarray(sc_rep, dtype),
                  true_bases=true)
    return ev, {"sigma": sig, "scale": sc, "bayes_mse": bayes}


def _postprocess(evals, info, start_step, eval_every, losses):
    """Host side: numpy, excess MSE, segment-mean losses, block matching."""
    if evals is None:
        return None
    ev = {k: np.asarray(v) for k, v in evals.items()}
    losses = np.asarray(losses)
    lead = ev["net_mse"].shape[:-2]  # () or (E,)
    S1 = ev["net_mse"].shape[-2]
    out = {"step": start_step + eval_every * np.arange(S1), **info}
    seg = losses.reshape(*lead, S1 - 1, eval_every).mean(-1)
    out["train_loss"] = np.concatenate([np.full((*lead, 1), np.nan), seg], axis=-1)
    out["net_mse"] = ev["net_mse"]
    out["excess_mse"] = ev["net_mse"] - info["bayes_mse"]
    out["eval_loss"] = ev["net_mse"].mean(-1)
    if "pair_error" in ev:
        cosines = ev["pair_cosines"].astype(np.float64)
        m = subspaces.match_pairs(ev["pair_error"].astype(np.float64), d=cosines.shape[-1],
                                  cosines=cosines)
        out.update(subspace_error=m.error, block_match=m.match, principal_angles=m.angles,
                   stacked_error=ev["stacked_error"])
    return out


def _with_learning_rate(opt_state, learning_rate):
    hp = dict(opt_state.hyperparams)
    old = hp["learning_rate"]
    hp["learning_rate"] = jnp.broadcast_to(jnp.asarray(learning_rate, old.dtype), old.shape)
    return opt_state._replace(hyperparams=hp)


def fit(net, data, *, key: Array, steps: int, weights=None, batch_size: int | None = None,
        learning_rate=5e-4, noise=None, optimizer: Callable = optax.adam,
        schedule: Callable | None = None, params=None, opt_state=None,
        start_step: int = 0) -> TrainResult:
    """Trains one network with the denoising loss: pure and traceable (no evaluation).

    The program of :func:`train` without its evaluation and without compiling it: call it
    under ``jax.jit`` (``net``, ``steps``, ``batch_size``, ``noise``, ``optimizer``,
    ``schedule`` and ``start_step`` static) or inside a traced function, e.g. a sweep's
    vmapped point function; ``data``, ``weights``, ``key``, ``learning_rate``, ``params``
    and ``opt_state`` may be traced. ``train(net, data, seed=s, ...)`` runs
    ``fit(net, data, key=jax.random.key(s), ...)``.

    Args:
      net: a network of :mod:`molrg.networks` (static).
      data: ``(N, n)`` training set or a :class:`molrg.MoLRG` (fresh samples every step).
      key: the run's PRNG key (initialisation, minibatches, noise; module docstring).
      steps: number of optimiser steps.
      weights: optional ``(N,)`` non-negative per-sample weights of the loss (0 = padding:
        the row counts nothing; see :func:`denoising_loss`); training sets only.
      batch_size: minibatch size, or None (default) for full-batch steps (all N rows, in
        order; needs a training set).
      learning_rate: the optimiser's (peak) learning rate (default 5e-4); ignored when
        ``opt_state`` is given (its learning rate is used).
      noise: :class:`DDPMNoise` (default), :class:`LogNormalNoise` or :class:`LogUniformNoise`.
      optimizer: an optax factory taking ``learning_rate`` (default ``optax.adam``).
      schedule: optional ``schedule(i) -> factor`` of the absolute step index ``i``,
        multiplying the optimiser's update (module docstring), e.g.
        ``optax.cosine_decay_schedule(1.0, steps, alpha=1e-3)``.
      params: starting parameters (default ``net.init(fold_in(key, 0))`` in the data's dtype).
      opt_state: starting optimiser state (default: fresh, at ``learning_rate``).
      start_step: the absolute index of the first step (a Python int).

    Returns:
      A :class:`TrainResult` (``evals`` None).
    """
    noise = DDPMNoise() if noise is None else noise
    _check_common(net, data, steps, batch_size, None, noise, optimizer, start_step, None,
                  weights, schedule)
    check_positive("learning_rate", learning_rate)
    if not isinstance(data, MoLRG):
        data = jnp.asarray(data)
    if params is None:
        params = net.init(jax.random.fold_in(key, 0), dtype=data.dtype)
    plan = _Plan(net, optimizer, noise, steps, batch_size, 0, isinstance(data, MoLRG), False, schedule)
    if opt_state is None:
        lr = jnp.asarray(learning_rate).astype(jnp.result_type(*jax.tree.leaves(params)))
        opt_state = _optimizer(plan, lr).init(params)
    p, s, losses, _ = _program(plan, data, weights, key, params, opt_state, start_step, None, 0)
    return TrainResult(p, s, start_step + steps, losses, None)


def train(net, data, *, seed: int, steps: int, batch_size: int | None = 32, learning_rate=None,
          noise=None, optimizer: Callable = optax.adam, params=None, opt_state=None,
          start_step: int = 0, eval_every: int | None = None, mix: MoLRG | None = None,
          eval_levels=None, eval_size: int = 512, eval_seed: int = 0, weights=None,
          schedule: Callable | None = None) -> TrainResult:
    """Trains one network with the denoising loss, as one compiled ``lax.scan``.

    The compiled :func:`fit` with ``key = jax.random.key(seed)``, plus evaluation.

    Args:
      net: a network of :mod:`molrg.networks` (static; its ``apply`` is the model).
      data: ``(N, n)`` fixed training set (epoch permutations, P1's setting) or a
        :class:`molrg.MoLRG` (fresh samples every step).
      seed: the run's seed (initialisation, minibatches, noise); an int in [0, 2^31).
      steps: number of optimiser steps (e.g. P1 Fig. 3: 200 epochs of 12,000 samples at
        batch 32 = 75,000).
      batch_size: minibatch size (default 32), or None for full-batch steps.
      learning_rate: default 5e-4 (P1); with ``opt_state`` given, None keeps its value.
      noise: :class:`DDPMNoise` (default), :class:`LogNormalNoise` or :class:`LogUniformNoise`.
      optimizer: an optax factory taking ``learning_rate`` (default ``optax.adam``); it is
        wrapped with ``optax.inject_hyperparams``.
      params: starting parameters (default ``net.init`` from the seed, in the data's dtype).
      opt_state: starting optimiser state (default: fresh); pass with ``params`` and
        ``start_step`` to resume.
      start_step: the absolute index of the first step (selects the randomness).
      eval_every: evaluate every this many steps (must divide ``steps``), and at the start.
      mix: the true mixture for evaluation (default: ``data`` when it is a MoLRG).
      eval_levels: ``(sigmas, scales)`` for evaluation (default: the noise's levels).
      eval_size: eval samples per level.
      eval_seed: seed of the fixed eval set.
      weights: optional ``(N,)`` per-sample loss weights (see :func:`fit`).
      schedule: optional learning-rate schedule factor of the step index (see :func:`fit`);
        part of the compiled program's cache key, so reuse one function object to reuse
        the compile.

    Returns:
      A :class:`TrainResult`.

    Example:
      >>> mix = molrg.paper_molrg(jax.random.key(0))
      >>> x0, _ = mix.sample(jax.random.key(1), 12_000)
      >>> net = LowRankDenoiser(n=50, K=3, d=5, delta=0.2)
      >>> res = train(net, x0, seed=0, steps=75_000, eval_every=2_500, mix=mix)
    """
    noise = DDPMNoise() if noise is None else noise
    _check_common(net, data, steps, batch_size, eval_every, noise, optimizer, start_step, mix,
                  weights, schedule)
    _check_int("seed", seed, 0)
    if seed >= 2**31:
        fail("seed", f"must be < 2^31; got {seed}")
    if learning_rate is not None:
        check_positive("learning_rate", learning_rate)
    if mix is None and isinstance(data, MoLRG):
        mix = data
    if not isinstance(data, MoLRG):
        data = jnp.asarray(data)
    dtype = data.dtype
    if params is None:
        params = net.init(_init_key(seed), dtype=dtype)
    plan = _Plan(net, optimizer, noise, steps, batch_size, eval_every or 0,
                 isinstance(data, MoLRG), eval_every is not None and _has_subspaces(net, mix),
                 schedule)
    if opt_state is None:
        opt_state = _optimizer(plan, 5e-4 if learning_rate is None else learning_rate).init(params)
    elif learning_rate is not None:
        opt_state = _with_learning_rate(opt_state, learning_rate)
    evalset, info, J = None, None, 0
    if eval_every is not None:
        evalset, info = _make_evalset(net, mix, noise, eval_levels, eval_size, eval_seed, dtype,
                                      plan.subspace)
        J = info["sigma"].size
    weights = None if weights is None else jnp.asarray(weights)
    p, s, losses, evals = _single_program(plan, data, weights, jnp.asarray(seed, jnp.int32),
                                          params, opt_state, start_step, evalset, J)
    return TrainResult(p, s, start_step + steps, losses,
                       _postprocess(evals, info, start_step, eval_every, losses))


def _largest_divisor(num: int, limit: int) -> int:
    return max(k for k in range(1, min(num, limit) + 1) if num % k == 0)


def train_ensemble(net, data, *, seeds, learning_rates=None, steps: int,
                   batch_size: int | None = 32, noise=None, optimizer: Callable = optax.adam,
                   params=None, opt_state=None, start_step: int = 0,
                   eval_every: int | None = None, mix: MoLRG | None = None, eval_levels=None,
                   eval_size: int = 512, eval_seed: int = 0, devices=None, weights=None,
                   schedule: Callable | None = None) -> TrainResult:
    """Trains an ensemble (one member per seed and learning rate) as one vmapped program.

    Member ``e`` is exactly ``train(net, data, seed=seeds[e],
    learning_rate=learning_rates[e], ...)`` (same randomness, same arithmetic up to
    rounding of batched matrix products). With more than one device the ensemble axis
    is split over the largest number of ``devices`` that divides E, via
    ``jax.shard_map`` on a ``Mesh`` axis ``"ensemble"``; members never communicate.

    Args:
      seeds: ``(E,)`` ints.
      learning_rates: ``(E,)`` or a scalar (default 5e-4); with ``opt_state`` given,
        None keeps the states' values.
      params, opt_state: optional starting values with a leading E axis (``params``
        without it is broadcast to every member).
      devices: devices to shard over (default ``jax.devices()``).
      Other arguments: as in :func:`train` (the eval set is shared by all members).

    Returns:
      A :class:`TrainResult` whose arrays have a leading E axis.
    """
    noise = DDPMNoise() if noise is None else noise
    _check_common(net, data, steps, batch_size, eval_every, noise, optimizer, start_step, mix,
                  weights, schedule)
    seeds_np = np.asarray(seeds)
    if seeds_np.ndim != 1 or seeds_np.size < 1 or not np.issubdtype(seeds_np.dtype, np.integer):
        fail("seeds", f"must be a non-empty 1-D array of integers; got {seeds!r}")
    if seeds_np.min() < 0 or seeds_np.max() >= 2**31:
        fail("seeds", "must lie in [0, 2^31)")
    E = seeds_np.size
    if learning_rates is not None:
        lrs = np.asarray(learning_rates, np.float64)
        if lrs.ndim > 1 or (lrs.ndim == 1 and lrs.size != E):
            fail("learning_rates", f"must be a scalar or have one value per seed ({E}); got shape {lrs.shape}")
        check_positive("learning_rates", lrs)
        lrs = np.broadcast_to(lrs, (E,))
    if mix is None and isinstance(data, MoLRG):
        mix = data
    if not isinstance(data, MoLRG):
        data = jnp.asarray(data)
    dtype = data.dtype
    seeds_j = jnp.asarray(seeds_np, jnp.int32)
    plan = _Plan(net, optimizer, noise, steps, batch_size, eval_every or 0,
                 isinstance(data, MoLRG), eval_every is not None and _has_subspaces(net, mix),
                 schedule)

    if params is None:
        params = jax.vmap(lambda s: net.init(_init_key(s), dtype=dtype))(seeds_j)
    else:
        template = jax.eval_shape(lambda: net.init(jax.random.key(0), dtype=dtype))
        shapes = [np.shape(x) for x in jax.tree.leaves(params)]
        if shapes == [t.shape for t in jax.tree.leaves(template)]:
            params = jax.tree.map(lambda x: jnp.broadcast_to(x, (E, *np.shape(x))), params)
        elif any(len(s) < 1 or s[0] != E for s in shapes):
            fail("params", f"must be one network's parameters or have a leading axis of size E = {E}")
    if opt_state is None:
        lr0 = np.full((E,), 5e-4) if learning_rates is None else lrs
        lr0 = jnp.asarray(lr0, jnp.result_type(*jax.tree.leaves(params)))
        opt_state = jax.vmap(lambda p, lr: _optimizer(plan, lr).init(p))(params, lr0)
    elif learning_rates is not None:
        hp = dict(opt_state.hyperparams)
        hp["learning_rate"] = jnp.asarray(lrs, hp["learning_rate"].dtype)
        opt_state = opt_state._replace(hyperparams=hp)

    evalset, info, J = None, None, 0
    if eval_every is not None:
        evalset, info = _make_evalset(net, mix, noise, eval_levels, eval_size, eval_seed, dtype,
                                      plan.subspace)
        J = info["sigma"].size

    devs = tuple(jax.devices() if devices is None else devices)
    m = _largest_divisor(E, len(devs))
    weights = None if weights is None else jnp.asarray(weights)
    args = (data, weights, seeds_j, params, opt_state, jnp.asarray(start_step, jnp.int32), evalset)
    if m == 1:
        fn, _ = _ensemble_program(plan, J, None)
        if devices is not None:
            args = jax.device_put(args, devs[0])
    else:
        fn, mesh = _ensemble_program(plan, J, devs[:m])
        ens, rep = NamedSharding(mesh, P("ensemble")), NamedSharding(mesh, P())
        args = (jax.device_put(args[0], rep), jax.device_put(args[1], rep),
                jax.device_put(args[2], ens), jax.device_put(args[3], ens),
                jax.device_put(args[4], ens), jax.device_put(args[5], rep),
                jax.device_put(args[6], rep))
    p, s, losses, evals = fn(*args)
    return TrainResult(p, s, start_step + steps, losses,
                       _postprocess(evals, info, start_step, eval_every, losses))
