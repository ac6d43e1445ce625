"""Beyond Assumption 1: the SNR curve when the MoLRG assumptions are relaxed (P1 appendix tables).

K = 2, n = 50, d = 5, delta = 0.2, 30,000 samples per noise level, P1's sigma grid
(:data:`molrg.schedules.PAPER_SIGMAS`). Variants (docs/theory.md section 2):

* ``orthogonal``: the baseline (Assumption 1);
* ``overlap30``: the two subspaces at principal angle 30 degrees (all d angles equal;
  :func:`molrg.random_molrg` with ``angle=30``). The class-irrelevant detail of class k lives in
  the other class's subspace, which now overlaps ``U_k``;
* ``unequal_ranks``: ``d = (10, 2)``;
* ``unequal_weights``: ``pi = (0.8, 0.2)``;
* ``separated_means``: orthogonal subspaces plus class means ``mu_k`` of norm ``mean_radius``
  (default 3), pairwise orthogonal, random directions (:func:`molrg.separated_means`); the means
  are ``3 sqrt 2 ~ 4.2`` apart, far more than the within-class spread along the line joining them
  (about ``sqrt(d/n) ~ 0.3`` plus sigma), so the clusters are well separated at every sigma of the
  grid (the Bayes accuracy is reported to show it). The SNR keeps P1's definition (projection on
  ``span U_k``), so the part of the mean outside ``span U_k`` counts as "noise".

All variants but ``unequal_ranks`` and ``separated_means`` are evaluated with the mixture's general
(eigen-frame) exact code path, so they share one compiled program; for orthogonal subspaces it
gives the same numbers as the specialised path (tested).

For each variant and sigma: fresh ``x_0``, ``x_t = x_0 + sigma eps`` (variance exploding),
the exact denoiser's output, and :func:`molrg.metrics.snr_per_class` (per-class ratios, class-mean
SNR and pooled ratio, with delta-method standard errors); batches at different sigmas are
independent. The unimodality verdict (:func:`molrg.metrics.unimodality`, 3 standard errors) is
taken on the class-mean SNR. Tables as CSV and markdown.

Claims (:func:`claims`, from the saved results), each on draws of its own (keys 13, 14 and 15:
those of the former ``check_theory`` module, so its numbers carry over) with ``num_samples``
samples per level: the overlap variant's SNR at the smallest sigma of the grid lies below the
orthogonal one and both match their sigma -> 0 limits (:func:`overlap_limit`); with
separated means the SNR decreases over the grid (no interior peak).

Trained networks (``train_networks``; :func:`train_networks`). P1 measured its appendix tables on
a *trained* eq.-4 network, not on the exact denoiser. Here that network is trained on
``num_train`` samples of every variant by molrg's recipe
(:class:`molrg.recovery.LowRankRecipe`: ``lowrank_restarts`` random starts, the
least objective kept, a final lr decay), certified against the same network started at the truth
and trained the same way (objective within 0.5%, :mod:`molrg.certify`), and its per-class and
pooled SNR reported beside the exact denoiser's on the same draws (table
``relaxations_network``, markdown under the exact tables). The network has one block dimension
(``max(d_k)``: 10 for ranks (10, 2)), orthonormal blocks, no class weights and no means, so
it cannot represent the overlap (its blocks are orthogonal), unequal ranks, unequal weights
or means: what it learns instead is reported as the principal angles (degrees) of each
matched block to each true subspace. On the orthogonal variant (P1's K = 2 appendix setting)
``recovery_seeds`` runs of the recipe give ``lowrank_recovery_rate[K=2]``.

Measured at the defaults (one run; every network certified, relative excess of its objective
-7.5e-4 .. +7.6e-5): orthogonal, K = 2: 16/16 seeds recover (8 starts; single starts after the
search stage reach the optimum's objective in 54/128), the network's SNR equals the exact one's
within 1 s.e. (59.4 vs 59.7 at the peak). Overlap 30 deg: the orthonormal blocks cannot follow
the subspaces; they lie on the pair's two bisectors (principal angles 14-16 deg to both U_1 and
U_2 for one block, 74-76 deg for the other); its SNR is 101 vs the exact 103 at sigma = 0.002
but peaks there (exact: 241 at 0.14) and is 43, 21, 9.7 at sigma = 0.14, 0.30, 0.59. Ranks
(10, 2), block dimension 10: block 1 recovers U_1 (angles <= 1 deg), block 2 contains U_2
(0.5, 0.7 deg) plus 8 directions of the other subspace's detail; SNR 66 vs 66.4 at the smallest
sigma but 49.5 vs 171 at sigma = 0.30 (class 2: 1.95 vs 12.6). Weights (0.8, 0.2): the
subspaces are recovered (<= 1 deg), but without the prior in its gate the SNR of class 1 falls
below and that of class 2 rises above the exact ones near the peak (59 vs 65.7, 56.2 vs 48.8 at
sigma = 0.30). Separated means: four directions of each block within 8 deg of U_k and the fifth
at 77-85 deg (turned towards the class mean, which eq. 4 cannot add); its SNR rises from 0.59
(sigma = 0.002) to 0.93 (sigma = 1.09) while the exact one falls from 0.71 to 0.39: P1's
"monotone decreasing with separated means" holds for the exact denoiser, not for eq. 4 trained
on such data.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np

import molrg
from molrg.metrics import sampled_snr, snr_per_class, unimodality
from molrg.networks import LowRankDenoiser
from molrg.recovery import LowRankRecipe, objective_draws, recovery_study, recovery_summary, train_with_recipe
from molrg.subspaces import principal_angles
from molrg.schedules import PAPER_SIGMAS
from molrg.study import Claim, Experiment, Progress, Results, atomic_write, load_results, save_figure
from molrg.study.plotting import FULL_WIDTH, mark_quick, paper_style, plain_log_ticks

VARIANTS = ("orthogonal", "overlap30", "unequal_ranks", "unequal_weights", "separated_means")
_Z = 4.0  # two-sided agreement bound in standard errors (false alarm ~6e-5 per comparison)
_Z_ORDER = 3.0  # one-sided significance of an ordering, as in metrics.unimodality
_OVERLAP_KEY, _MEANS_MIX_KEY, _MEANS_SAMPLE_KEY = 13, 14, 15  # the claims' draws (former check_theory keys)
_LABELS = {"orthogonal": "orthogonal (baseline)", "overlap30": "30° overlap", "unequal_ranks": "ranks d=(10, 2)",
           "unequal_weights": "weights (0.8, 0.2)", "separated_means": "separated means"}


@dataclasses.dataclass(frozen=True)
class RelaxationsConfig:
    n: int = 50  # ambient dimension
    K: int = 2  # number of classes (subspaces)
    d: int = 5  # dimension of each class's subspace (all variants but unequal_ranks)
    delta: float = 0.2  # scale of the class-irrelevant detail on the other subspaces
    num_samples: int = 30_000  # per noise level and variant
    sigmas: tuple[float, ...] = PAPER_SIGMAS  # noise levels (P1's)
    angle: float = 30.0  # principal angle (degrees) of the overlap variant
    ranks: tuple[int, ...] = (10, 2)  # subspace dimensions of the unequal_ranks variant
    weights: tuple[float, ...] = (0.8, 0.2)  # class weights of the unequal_weights variant
    mean_radius: float = 3.0  # norm of each class mean in the separated-means variant
    variants: tuple[str, ...] = VARIANTS  # the relaxations computed
    seed: int = 0  # PRNG seed of the mixtures, samples and noise
    train_networks: bool = True  # train P1's eq.-4 network on every variant (P1's tables are of a trained net)
    num_train: int = 12_000  # training samples of each network
    lowrank_restarts: int = 8  # random starts of the recipe (molrg.recovery.LowRankRecipe)
    lowrank_steps: int = 4000  # Adam steps per start
    lowrank_decay_steps: int = 2000  # the last steps (kept start only) cosine-decay the lr to 1%
    lowrank_learning_rate: float = 5e-3  # Adam learning rate
    batch_size: int = 32  # training batch size
    recovery_seeds: int = 16  # runs of the recipe on the orthogonal variant (the K = 2 recovery rate)

    def validate(self):
        for f in ("n", "d", "num_samples"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be >= 1")
        if self.K < 2:
            raise ValueError("K: must be >= 2")
        if not self.variants or any(v not in VARIANTS for v in self.variants):
            raise ValueError(f"variants: must be a non-empty subset of {VARIANTS}; got {self.variants}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("variants: must not repeat")
        if not 0.0 <= self.delta < 1.0:
            raise ValueError(f"delta: must lie in [0, 1); got {self.delta}")
        if len(self.sigmas) < 3 or min(self.sigmas) <= 0 or list(self.sigmas) != sorted(set(self.sigmas)):
            raise ValueError("sigmas: need at least 3 strictly increasing values > 0")
        if self.K * self.d > self.n:
            raise ValueError(f"d: need K * d <= n; got {self.K} * {self.d} > {self.n}")
        if not 0.0 < self.angle <= 90.0:
            raise ValueError(f"angle: must lie in (0, 90] degrees; got {self.angle}")
        if self.d * (self.K + 1) > self.n:  # the overlap claim draws that variant whatever `variants`
            raise ValueError(f"angle: the overlap variant needs n >= d (K + 1) = {self.d * (self.K + 1)}")
        if len(self.ranks) != self.K or min(self.ranks) < 1 or sum(self.ranks) > self.n:
            raise ValueError(f"ranks: need K = {self.K} ranks >= 1 with sum <= n; got {self.ranks}")
        if len(self.weights) != self.K or min(self.weights) <= 0 or abs(sum(self.weights) - 1) > 1e-9:
            raise ValueError(f"weights: need K = {self.K} positive weights summing to 1; got {self.weights}")
        if self.mean_radius <= 0:
            raise ValueError(f"mean_radius: must be > 0; got {self.mean_radius}")
        if self.K > self.n:
            raise ValueError("K: separated means need K <= n")
        if self.num_samples < 4 * self.K / min(self.weights):
            raise ValueError("num_samples: too few for every class to be sampled")
        if self.recovery_seeds < 1:
            raise ValueError("recovery_seeds: must be >= 1")
        if self.num_train < 1:
            raise ValueError("num_train: must be >= 1")
        if self.K * max(max(self.ranks), self.d) > self.n:
            raise ValueError("ranks: the network needs K * max(d_k) <= n")
        network_recipe(self).validate(self.num_train)


def make_variant(name: str, cfg: RelaxationsConfig, key) -> molrg.MoLRG:
    """The mixture of one variant (all share the base settings of ``cfg``)."""
    k_bases, k_means = jax.random.split(key)
    common = dict(n=cfg.n, K=cfg.K, delta=cfg.delta)
    if name in ("orthogonal", "unequal_weights"):
        weights = jnp.asarray(cfg.weights) if name == "unequal_weights" else None
        mix = molrg.random_molrg(k_bases, d=cfg.d, weights=weights, **common)
        # The general (eigen-frame) code path is exact for orthogonal subspaces too; using it
        # here lets these variants and the overlap variant share one compiled sampling program
        # (same shapes and pytree structure), which saves seconds of XLA compilation.
        return molrg.MoLRG(mix.bases, weights=mix.weights, delta=mix.delta, structure="general")
    if name == "overlap30":
        return molrg.random_molrg(k_bases, d=cfg.d, angle=cfg.angle, **common)
    if name == "unequal_ranks":
        return molrg.random_molrg(k_bases, d=cfg.ranks, **common)
    if name == "separated_means":
        means = molrg.separated_means(k_means, n=cfg.n, K=cfg.K, radius=cfg.mean_radius)
        return molrg.random_molrg(k_bases, d=cfg.d, means=means, **common)
    raise ValueError(f"variant: unknown {name!r}; known: {VARIANTS}")


def compute(cfg: RelaxationsConfig, variants=None, *, verbose: bool = False) -> dict:
    """Sampled SNR statistics per variant: ``{name: sampled_snr(...) dict + verdict}``."""
    variants = tuple(variants or cfg.variants)
    keys = jax.random.split(jax.random.key(cfg.seed), 2 * len(VARIANTS))
    prog = Progress(len(variants), "relaxations", enabled=verbose)
    out = {}
    for name in variants:
        i = VARIANTS.index(name)  # a variant's draws do not depend on which others run
        mix = make_variant(name, cfg, keys[2 * i])
        st = sampled_snr(mix, np.asarray(cfg.sigmas), key=keys[2 * i + 1], num_samples=cfg.num_samples,
                         extras=False)
        st["verdict"] = unimodality(np.asarray(cfg.sigmas), st["snr"], st["snr_se"])
        out[name] = st
        prog.update(1, name)
    return out


def overlap_limit(delta: float, angle_deg: float) -> float:
    """sigma -> 0 SNR with K = 2 subspaces at equal principal angles theta (derived here).

    As sigma -> 0 the output is x_0 = U_k a + delta U_l e. With U_k^T U_l = cos(theta) I,
    E||P_k x_0||^2 = d + delta^2 d cos^2(theta) and E||x_0 - P_k x_0||^2 = delta^2 d sin^2(theta), so

        SNR -> (1 + delta^2 cos^2 theta) / (delta^2 sin^2 theta).
    """
    c2 = np.cos(np.deg2rad(angle_deg)) ** 2
    return (1.0 + delta**2 * c2) / (delta**2 * (1.0 - c2))


def claim_measurements(cfg: RelaxationsConfig) -> dict:
    """Every number :func:`claims` reads, by claim name (the measured dicts of the claims).

    Overlap vs orthogonal at the smallest sigma of the grid (keys from ``jax.random.key(13)``) and
    the separated-means curve over the grid (model key 14, sampling key 15), ``cfg.num_samples``
    samples per level, whatever ``cfg.variants``.
    """
    sigma = np.array([cfg.sigmas[0]])
    keys = jax.random.split(jax.random.key(_OVERLAP_KEY), 4)
    st = {name: sampled_snr(make_variant(name, cfg, keys[2 * i]), sigma, key=keys[2 * i + 1],
                            num_samples=cfg.num_samples, extras=False)
          for i, name in enumerate(("orthogonal", "overlap30"))}
    orth, over = (float(st[v]["snr"][0]) for v in ("orthogonal", "overlap30"))
    se_o, se_v = (float(st[v]["snr_se"][0]) for v in ("orthogonal", "overlap30"))
    diff_se = float(np.hypot(se_o, se_v))
    lim_orth = 1.0 / ((cfg.K - 1) * cfg.delta**2)
    lim_over = overlap_limit(cfg.delta, cfg.angle)
    common = {"sigma": float(sigma[0]), "snr_orthogonal": orth, "se_orthogonal": se_o, "snr_overlap": over,
              "se_overlap": se_v, "samples": cfg.num_samples}
    out = {
        "relaxation_overlap_lowers_snr": {**common, "difference": over - orth, "difference_se": diff_se},
        "relaxation_overlap_small_sigma_limit": {**common, "limit_orthogonal": lim_orth,
                                                 "z_orthogonal": (orth - lim_orth) / se_o,
                                                 "limit_overlap": lim_over, "z_overlap": (over - lim_over) / se_v},
    }
    mix = make_variant("separated_means", cfg, jax.random.key(_MEANS_MIX_KEY))
    sig = np.asarray(cfg.sigmas)
    st = sampled_snr(mix, sig, key=jax.random.key(_MEANS_SAMPLE_KEY), num_samples=cfg.num_samples, extras=False)
    v = unimodality(sig, st["snr"], st["snr_se"], z=_Z_ORDER)
    out["relaxation_separated_means"] = {
        "verdict": v.verdict, "snr": [float(x) for x in st["snr"]], "snr_se_max": float(np.max(st["snr_se"])),
        "peak_sigma": v.peak_x, "gain_left": v.gain_left, "gain_left_se": v.gain_left_stderr,
        "min_bayes_accuracy": float(np.min(st["bayes_accuracy"])), "samples": cfg.num_samples}
    return out


def _pm(v, se):
    return f"{v:.3g} ± {se:.2g}"


def markdown_tables(cfg: RelaxationsConfig, stats: dict) -> str:
    """The tables of P1's appendix as markdown: class-mean SNR, then per class."""
    names = list(stats)
    lines = [f"SNR of the exact denoiser's outputs (class mean of per-class ratios, ± 1 s.e.), K={cfg.K}, "
             f"n={cfg.n}, d={cfg.d}, delta={cfg.delta}, {cfg.num_samples:,} samples per cell.", "",
             "| sigma | " + " | ".join(_LABELS[v] for v in names) + " |",
             "|---:|" + "---:|" * len(names)]
    for j, s in enumerate(cfg.sigmas):
        lines.append(f"| {s:g} | " + " | ".join(_pm(stats[v]["snr"][j], stats[v]["snr_se"][j]) for v in names) + " |")
    lines.append("| **verdict** | " + " | ".join(stats[v]["verdict"].verdict for v in names) + " |")
    lines += ["", "Per-class SNR (class k: ratio of class-k expectations, ± 1 s.e.).", "",
              "| sigma | " + " | ".join(f"{_LABELS[v]}, class {k + 1}" for v in names for k in range(cfg.K)) + " |",
              "|---:|" + "---:|" * (len(names) * cfg.K)]
    for j, s in enumerate(cfg.sigmas):
        lines.append(f"| {s:g} | " + " | ".join(_pm(stats[v]["ratio"][j, k], stats[v]["ratio_se"][j, k])
                                             for v in names for k in range(cfg.K)) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# P1's eq.-4 network trained on every variant (P1 measured its appendix tables on one).
# ----------------------------------------------------------------------------------------
_NET_KEY = 100  # the networks' data, draws, training and evaluation keys: fold_in(key(seed), 100 + variant index)


def network_recipe(cfg: RelaxationsConfig) -> LowRankRecipe:
    """molrg's recipe (:class:`molrg.recovery.LowRankRecipe`) with this config's restarts and steps."""
    return LowRankRecipe(restarts=cfg.lowrank_restarts, steps=cfg.lowrank_steps, decay_steps=cfg.lowrank_decay_steps,
                         learning_rate=cfg.lowrank_learning_rate, batch_size=cfg.batch_size)


def truth_frame(mix: molrg.MoLRG, d_net: int, key) -> jnp.ndarray:
    """The ``(n, K d_net)`` start "at the truth" of a network with ``d_net`` columns per block:
    block k holds ``U_k`` and, where ``d_k < d_net``, orthonormal directions orthogonal to every
    ``U_l`` (the network's polar map orthonormalises the blocks of overlapping subspaces)."""
    stacked = mix.stacked_bases
    q, _ = jnp.linalg.qr(stacked)
    blocks = []
    for k, b in enumerate(mix.bases):
        extra = d_net - b.shape[1]
        if extra:
            w = jax.random.normal(jax.random.fold_in(key, k), (mix.n, extra), b.dtype)
            w = w - q @ (q.T @ w)
            for prev in blocks:
                w = w - prev @ (prev.T @ w)
            b = jnp.concatenate([b, jnp.linalg.qr(w)[0]], axis=1)
        blocks.append(b)
    return jnp.concatenate(blocks, axis=1)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _net_level(net, mix, params, key, num, sigma):
    """SNR statistics (:func:`molrg.metrics.snr_per_class`) of the network's and the exact
    denoiser's outputs on the same fresh draws at one noise level (variance exploding)."""
    k_x, k_eps = jax.random.split(key)
    x0, lab = mix.sample(k_x, num)
    xt = x0 + sigma * jax.random.normal(k_eps, x0.shape, x0.dtype)
    net_out = net.apply(params, xt, sigma)
    exact = molrg.denoise(mix, xt, sigma, jnp.ones((), xt.dtype))
    return snr_per_class(net_out, lab, mix), snr_per_class(exact, lab, mix)


def matched_angles(U, d_net: int, mix: molrg.MoLRG):
    """Principal angles (degrees) of the learned block matched to each true subspace, the
    block matched to each class (the assignment of least total squared sine), and the angles
    of every block to every subspace (``all[k][l]``: block k, class l)."""
    K = len(mix.bases)
    blocks = [U[:, k * d_net:(k + 1) * d_net] for k in range(K)]
    ang = [[np.degrees(np.asarray(principal_angles(jnp.asarray(blocks[k]), b))) for b in mix.bases]
           for k in range(K)]
    cost = lambda perm: sum(float(np.sum(np.sin(np.radians(ang[perm[l]][l])) ** 2)) for l in range(K))  # noqa: E731
    match = min(itertools.permutations(range(K)), key=cost)
    return [ang[match[l]][l] for l in range(K)], list(match), ang


def train_networks(cfg: RelaxationsConfig, variants=None, *, verbose: bool = False) -> dict:
    """P1's eq.-4 network trained by the recipe (:func:`network_recipe`) on ``cfg.num_train``
    samples of every variant, its certificate, what it learns (principal angles to the true
    subspaces) and its SNR beside the exact denoiser's on the same draws at every sigma. The
    network has one block dimension: ``max(d_k)`` (``d`` for the equal-rank variants). On the
    orthogonal variant ``cfg.recovery_seeds`` runs (:func:`molrg.recovery.recovery_study`)
    give the recovery rate; seed 0's network is the one evaluated."""
    variants = tuple(variants or cfg.variants)
    recipe = network_recipe(cfg)
    model_keys = jax.random.split(jax.random.key(cfg.seed), 2 * len(VARIANTS))  # those of compute()
    prog = Progress(len(variants), "trained networks", enabled=verbose)
    out = {}
    for name in variants:
        i = VARIANTS.index(name)
        mix = make_variant(name, cfg, model_keys[2 * i])
        k_data, k_draws, k_train, k_eval, k_pad = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed),
                                                                                      _NET_KEY + i), 5)
        x, _ = mix.sample(k_data, cfg.num_train)
        d_net = max(mix.dims)
        net = LowRankDenoiser(cfg.n, cfg.K, d_net, cfg.delta)
        draws = objective_draws(k_draws, x)
        entry = {"d_net": d_net}
        if name == "orthogonal":
            study = recovery_study(net, x, mix, recipe, seeds=cfg.recovery_seeds, key=k_train, draws=draws)
            entry["recovery"] = recovery_summary(study)
            A = study["A"][0]
            entry["certificate"] = {"objective": float(study["objective"][0]),
                                    "objective_truth": study["objective_truth"],
                                    "relative_excess": float(study["relative_excess"][0]),
                                    "reached": bool(study["reached"][0]), "rtol": study["rtol"]}
        else:
            res = train_with_recipe(net, x, recipe, key=k_train, draws=draws,
                                    truth_a=truth_frame(mix, d_net, k_pad).astype(x.dtype))
            A = res["A"]
            entry["certificate"] = {k: res[k] for k in ("objective", "objective_truth", "relative_excess", "reached",
                                                        "rtol")}
        params = {"A": jnp.asarray(A)}
        angles, match, every = matched_angles(np.asarray(net.bases(params)), d_net, mix)
        entry["angles_deg"] = [[float(a) for a in row] for row in angles]
        entry["angles_all_deg"] = [[[float(a) for a in pair] for pair in row] for row in every]
        entry["block_of_class"] = match
        lv = [_net_level(net, mix, params, jax.random.fold_in(k_eval, j), cfg.num_samples,
                         jnp.asarray(s, x.dtype)) for j, s in enumerate(cfg.sigmas)]
        for tag, idx in (("net", 0), ("exact", 1)):
            st = [jax.tree.map(np.asarray, level[idx]) for level in lv]
            entry[f"snr_{tag}"] = np.array([s.snr for s in st], np.float64)
            entry[f"snr_{tag}_se"] = np.array([s.snr_stderr for s in st], np.float64)
            entry[f"pooled_{tag}"] = np.array([s.pooled for s in st], np.float64)
            entry[f"pooled_{tag}_se"] = np.array([s.pooled_stderr for s in st], np.float64)
            entry[f"ratio_{tag}"] = np.array([s.ratio for s in st], np.float64)
            entry[f"ratio_{tag}_se"] = np.array([s.ratio_stderr for s in st], np.float64)
        out[name] = entry
        prog.update(1, name)
    return out


def network_markdown(cfg: RelaxationsConfig, nets: dict) -> str:
    """The trained network's SNR beside the exact denoiser's (same draws), per variant."""
    lines = [f"P1's eq.-4 network trained on each variant ({network_recipe(cfg).restarts} random starts, "
             f"{cfg.lowrank_steps} Adam steps each, {cfg.num_train:,} training samples; block dimension max(d_k)) "
             f"vs the exact denoiser, on the same {cfg.num_samples:,} draws per cell: class-mean SNR net / exact, "
             "then pooled net / exact, then per class net / exact (± 1 s.e.).", ""]
    for name, e in nets.items():
        c = e["certificate"]
        ang = "; ".join(f"class {k + 1}: " + ", ".join(f"{a:.1f}" for a in row) for k, row in enumerate(e["angles_deg"]))
        lines += [f"**{_LABELS[name]}** (network blocks of dimension {e['d_net']}; certificate: objective "
                  f"{c['objective']:.5f} vs {c['objective_truth']:.5f} started at the truth, relative excess "
                  f"{c['relative_excess']:+.2e}, {'reached' if c['reached'] else 'NOT reached'} at rtol {c['rtol']:g}; "
                  f"principal angles (deg) of the matched block to each true subspace: {ang})", "",
                  "| sigma | SNR net | SNR exact | pooled net | pooled exact | "
                  + " | ".join(f"class {k + 1} net | class {k + 1} exact" for k in range(cfg.K)) + " |",
                  "|---:|" + "---:|" * (4 + 2 * cfg.K)]
        for j, s in enumerate(cfg.sigmas):
            cells = [_pm(e["snr_net"][j], e["snr_net_se"][j]), _pm(e["snr_exact"][j], e["snr_exact_se"][j]),
                     _pm(e["pooled_net"][j], e["pooled_net_se"][j]), _pm(e["pooled_exact"][j], e["pooled_exact_se"][j])]
            for k in range(cfg.K):
                cells += [_pm(e["ratio_net"][j, k], e["ratio_net_se"][j, k]),
                          _pm(e["ratio_exact"][j, k], e["ratio_exact_se"][j, k])]
            lines.append(f"| {s:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def run(cfg: RelaxationsConfig, verbose: bool = True) -> Results:
    stats = compute(cfg, verbose=verbose)
    measured = claim_measurements(cfg)
    rows = []
    for name, st in stats.items():
        for j, s in enumerate(cfg.sigmas):
            row = {"variant": name, "sigma": float(s), "snr": float(st["snr"][j]), "snr_se": float(st["snr_se"][j]),
                   "pooled_snr": float(st["pooled"][j]), "pooled_snr_se": float(st["pooled_se"][j]),
                   "bayes_accuracy": float(st["bayes_accuracy"][j]),
                   "mean_true_posterior": float(st["confidence"][j])}
            for k in range(cfg.K):
                row[f"snr_class{k + 1}"] = float(st["ratio"][j, k])
                row[f"snr_class{k + 1}_se"] = float(st["ratio_se"][j, k])
                row[f"count_class{k + 1}"] = int(st["count"][j, k])
            rows.append(row)
    verdicts = [{"variant": name, "verdict": st["verdict"].verdict, "peak_sigma": st["verdict"].peak_x,
                 "peak_snr": st["verdict"].peak_value, "gain_left": st["verdict"].gain_left,
                 "gain_left_se": st["verdict"].gain_left_stderr, "gain_right": st["verdict"].gain_right,
                 "gain_right_se": st["verdict"].gain_right_stderr} for name, st in stats.items()]
    md = markdown_tables(cfg, stats)
    nets = train_networks(cfg, verbose=verbose) if cfg.train_networks else {}
    net_rows, net_info = [], {}
    for name, e in nets.items():
        for j, s in enumerate(cfg.sigmas):
            row = {"variant": name, "sigma": float(s)}
            for tag in ("net", "exact"):
                row[f"snr_{tag}"], row[f"snr_{tag}_se"] = float(e[f"snr_{tag}"][j]), float(e[f"snr_{tag}_se"][j])
                row[f"pooled_{tag}"] = float(e[f"pooled_{tag}"][j])
                row[f"pooled_{tag}_se"] = float(e[f"pooled_{tag}_se"][j])
                for k in range(cfg.K):
                    row[f"snr_{tag}_class{k + 1}"] = float(e[f"ratio_{tag}"][j, k])
                    row[f"snr_{tag}_class{k + 1}_se"] = float(e[f"ratio_{tag}_se"][j, k])
            net_rows.append(row)
        net_info[name] = {k: e[k] for k in ("d_net", "certificate", "angles_deg", "angles_all_deg", "block_of_class")}
        if "recovery" in e:
            net_info[name]["recovery"] = e["recovery"]
    if nets:
        md += "\n\n" + network_markdown(cfg, nets)
    if "orthogonal" in nets and "overlap30" in nets:
        o, v = nets["orthogonal"], nets["overlap30"]
        measured["relaxation_overlap_lowers_snr[trained network]"] = {
            "sigma": float(cfg.sigmas[0]), "snr_orthogonal": float(o["snr_net"][0]),
            "se_orthogonal": float(o["snr_net_se"][0]), "snr_overlap": float(v["snr_net"][0]),
            "se_overlap": float(v["snr_net_se"][0]), "difference": float(v["snr_net"][0] - o["snr_net"][0]),
            "difference_se": float(np.hypot(o["snr_net_se"][0], v["snr_net_se"][0])),
            "exact_snr_overlap": float(v["snr_exact"][0]), "samples": cfg.num_samples,
            "max_angle_deg_overlap": float(max(max(r) for r in v["angles_deg"])),
            "certificate_reached": [bool(o["certificate"]["reached"]), bool(v["certificate"]["reached"])]}
    if "orthogonal" in nets:
        measured["lowrank_recovery_rate[K=2]"] = nets["orthogonal"]["recovery"]
    parts = []
    for name, st in stats.items():
        v = st["verdict"]
        parts.append(f"{_LABELS[name]}: {v.verdict} (SNR {st['snr'][0]:.3g} at sigma={cfg.sigmas[0]:g}, "
                     f"max {v.peak_value:.3g} at sigma={v.peak_x:g}, {st['snr'][-1]:.3g} at sigma={cfg.sigmas[-1]:g})")
    summary = (f"Sampled exact-denoiser SNR, K={cfg.K}, n={cfg.n}, d={cfg.d}, delta={cfg.delta}, "
               f"{cfg.num_samples:,} samples per sigma and variant, P1's sigma grid; verdicts at 3 standard errors. "
               + "; ".join(parts) + ". Separated means: radius "
               f"{cfg.mean_radius:g} (Bayes accuracy "
               + (f"{np.min(stats['separated_means']['bayes_accuracy']):.3f} at worst"
                  if "separated_means" in stats else "n/a") + ").")
    if nets:
        parts = []
        for name, e in nets.items():
            c = e["certificate"]
            parts.append(f"{_LABELS[name]}: net SNR {e['snr_net'][0]:.3g} ± {e['snr_net_se'][0]:.2g} vs exact "
                         f"{e['snr_exact'][0]:.3g} at sigma={cfg.sigmas[0]:g}, max net {np.max(e['snr_net']):.3g} vs exact "
                         f"{np.max(e['snr_exact']):.3g}; largest principal angle of a matched block "
                         f"{max(max(r) for r in e['angles_deg']):.1f} deg; certificate "
                         f"{'reached' if c['reached'] else 'NOT reached'} (relative excess {c['relative_excess']:+.1e})")
        rec = nets["orthogonal"]["recovery"] if "orthogonal" in nets else None
        summary += (f" Trained eq.-4 network ({network_recipe(cfg).restarts} random starts x {cfg.lowrank_steps} steps, "
                    f"{cfg.num_train:,} samples; its SNR on the same draws as the exact one): " + "; ".join(parts) + "."
                    + (f" Recovery on the orthogonal variant: {rec['recovered']}/{rec['seeds']} seeds "
                       f"({rec['optimisation_failures']} optimisation failures; single random starts after the "
                       f"search stage: {rec['single_start']['reached']}/{rec['single_start']['starts']} reach the "
                       f"truth-started network's objective)." if rec else ""))
    if verbose:
        print("  " + summary)
    scalars = {"summary": summary, "markdown": md,
               "verdicts": {name: st["verdict"].verdict for name, st in stats.items()}, "claims": measured,
               "networks": net_info}
    tables = {"relaxations": rows, "relaxations_verdicts": verdicts}
    if net_rows:
        tables["relaxations_network"] = net_rows
    return Results(scalars=scalars, tables=tables)


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt
    res = load_results(results_dir)
    cfg = res["manifest"]["config"]
    rows = res["tables"]["relaxations"]
    verdicts = {r["variant"]: r["verdict"] for r in res["tables"]["relaxations_verdicts"]}
    names = [v for v in VARIANTS if v in verdicts]
    K = cfg["K"]
    num = 1 + K
    cols = min(num, 3)  # at most three panels to a full-width row
    nrows = -(-num // cols)
    with paper_style():
        # One y axis for all panels (the same quantity), labelled once per row.
        fig, grid = plt.subplots(nrows, cols, figsize=(FULL_WIDTH, 0.9 + 2.3 * nrows), sharey=True, squeeze=False,
                                 layout="constrained")
        for ax in grid.flat[num:]:
            ax.set_visible(False)
        axes = list(grid.flat[:num])
        for i, name in enumerate(names):
            r = [x for x in rows if x["variant"] == name]
            s = np.array([x["sigma"] for x in r])
            marker = "osD^v"[i % 5]
            axes[0].errorbar(s, [x["snr"] for x in r], yerr=[x["snr_se"] for x in r], fmt=f"{marker}-", ms=3,
                             capsize=1.5, color=f"C{i}", label=f"{_LABELS[name]}: {verdicts[name]}")
            for k in range(K):
                axes[1 + k].errorbar(s, [x[f"snr_class{k + 1}"] for x in r],
                                     yerr=[x[f"snr_class{k + 1}_se"] for x in r], fmt=f"{marker}-", ms=3,
                                     capsize=1.5, color=f"C{i}", label=_LABELS[name])
        axes[0].set_title("class-mean SNR\n(verdict at 3 s.e.)")
        for k in range(K):
            axes[1 + k].set_title(f"class {k + 1} SNR"
                                  + (f"\n(ranks: d={cfg['ranks'][k]}, weights: {cfg['weights'][k]})" if K == 2
                                     else ""))
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            plain_log_ticks(ax)
            ax.set_xlabel(r"noise level $\sigma$")
        for ax in grid[:, 0]:
            ax.set_ylabel("SNR of $E[x_0\\,|\\,x_t]$\n(P1 Def. 1, $\\pm$1 s.e.)")
        # Under the panels: the verdicts are long, and inside a panel they would cover curves.
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
        fig.suptitle(f"Relaxing Assumption 1: K={K}, n={cfg['n']}, d={cfg['d']}, $\\delta$={cfg['delta']}, "
                     f"{cfg['num_samples']:,} samples per point")
        mark_quick(fig, res)
        paths = save_figure(fig, fig_dir, "relaxations")
    md_path = os.path.join(fig_dir, "relaxations_table.md")
    with atomic_write(md_path, fsync=False) as fh:
        fh.write(res["scalars"]["markdown"] + "\n")
    return paths + [md_path]


def claims(results: dict) -> list[Claim]:
    """Subspace overlap and separated means (P1 appendix), the trained eq.-4 network on the
    overlap variant and its recovery rate at K = 2 (when trained), from the saved results."""
    cfg = results["manifest"]["config"]
    got = results["scalars"]["claims"]
    setting = f"K={cfg['K']}, n={cfg['n']}, d={cfg['d']}, delta={cfg['delta']}"
    low, lim, means = (got[name] for name in ("relaxation_overlap_lowers_snr", "relaxation_overlap_small_sigma_limit",
                                              "relaxation_separated_means"))
    out = [
        Claim("relaxation_overlap_lowers_snr",
              f"{cfg['angle']:g}-degree subspace overlap lowers the small-sigma SNR of the exact denoiser relative to "
              f"orthogonal subspaces ({setting}, sigma={low['sigma']:g})",
              low,
              f"snr_overlap < snr_orthogonal - {_Z_ORDER:g} combined standard errors",
              bool(low["snr_overlap"] < low["snr_orthogonal"] - _Z_ORDER * low["difference_se"]),
              source="P1", expected="FAIL",
              reason="P1 reports the overlap lowering the SNR, but for the exact denoiser it raises it: the sigma -> 0 "
                     "limit is (1 + delta^2 cos^2 theta) / (delta^2 sin^2 theta) = 103 at 30 degrees vs 1/delta^2 = 25 "
                     "orthogonal (derived, and measured: relaxation_overlap_small_sigma_limit), since the "
                     "class-irrelevant detail then lies partly inside U_k. P1 measured a trained eq.-4 network, whose "
                     "orthonormal U cannot represent overlapping subspaces: see "
                     "relaxation_overlap_lowers_snr[trained network]"),
        Claim("relaxation_overlap_small_sigma_limit",
              "the small-sigma SNRs match their sigma -> 0 limits: 1/((K-1) delta^2) (orthogonal) and "
              "(1 + delta^2 cos^2 theta) / (delta^2 sin^2 theta) (overlap at angle theta; the class-irrelevant "
              "detail lies in the other subspace, which overlaps U_k, so less of it counts as noise)",
              lim,
              f"|z| < {_Z:g} for both (bias at sigma={lim['sigma']:g} is O(sigma^2/lambda_min) ~ 1e-3 relative)",
              bool(abs(lim["z_orthogonal"]) < _Z and abs(lim["z_overlap"]) < _Z), source="molrg", expected="PASS"),
        Claim("relaxation_separated_means",
              f"with well-separated class means (norm {cfg['mean_radius']:g}, orthogonal, {setting}) the SNR "
              f"of the exact denoiser decreases with sigma over P1's grid (no interior peak)",
              means,
              f"metrics.unimodality verdict 'monotone decreasing' at {_Z_ORDER:g} standard errors",
              means["verdict"] == "monotone decreasing", source="P1", expected="PASS"),
    ]
    tr = got.get("relaxation_overlap_lowers_snr[trained network]")
    if tr is not None:
        out.append(Claim(
            "relaxation_overlap_lowers_snr[trained network]",
            f"{cfg['angle']:g}-degree subspace overlap lowers the small-sigma SNR of P1's trained eq.-4 network "
            f"relative to the same network trained on orthogonal subspaces ({setting}, sigma={tr['sigma']:g}, "
            f"{cfg['num_train']} training samples, molrg's recipe, both certified)",
            tr, f"snr_overlap < snr_orthogonal - {_Z_ORDER:g} combined standard errors, both networks' certificates "
                "reached",
            bool(tr["snr_overlap"] < tr["snr_orthogonal"] - _Z_ORDER * tr["difference_se"]
                 and all(tr["certificate_reached"])),
            source="P1", expected="FAIL",
            reason="not an optimiser's FAIL (both networks certified: objective within 1e-4 of the truth-started "
                   "network's): at sigma = 0.002 the trained network's SNR on the overlap data is 101 vs 25 on "
                   "orthogonal data, as the exact denoiser's (103 vs 25); its orthonormal blocks cannot follow the "
                   "overlapping subspaces (its blocks lie on the two bisectors of the pair: one 15 deg from both U_1 and U_2, the other 75 deg from both), and only from "
                   "sigma ~ 0.3 on does its overlap SNR fall below its orthogonal one (20.9 vs 59.4 at 0.296, "
                   "9.7 vs 21.6 at 0.585): measured in the relaxations_network table"))
    rec = got.get("lowrank_recovery_rate[K=2]")
    if rec is not None:
        out.append(Claim(
            "lowrank_recovery_rate[K=2]",
            f"molrg's recipe ({rec['restarts']} random starts, the least objective kept) recovers the subspaces of "
            f"P1's K = 2 appendix setting ({setting}, {cfg['num_train']} training samples) in at least 15 of 16 "
            f"seeds; counts of optimisation and sample-complexity failures from the certificate (objective within "
            f"rtol {rec['rtol']:g} of the truth-started network's); single random starts (before the selection, "
            f"constant lr) reported beside",
            rec, f"recovered (matched error < {rec['threshold']:g}) in >= 15/16 of the seeds (>= 16 seeds)",
            bool(rec["seeds"] >= 16 and rec["recovered"] >= 15 * rec["seeds"] / 16),
            source="molrg", expected="PASS"))
    return out


QUICK = {"num_samples": 4000, "variants": ("orthogonal", "overlap30", "unequal_weights", "separated_means"),
         "num_train": 2000, "lowrank_restarts": 2, "lowrank_steps": 300, "lowrank_decay_steps": 100,
         "recovery_seeds": 2}

EXPERIMENT = Experiment(
    name="relaxations", cost=147,
    summary="SNR of the exact denoiser when Assumption 1 is relaxed (overlap, ranks, weights, means)",
    config=RelaxationsConfig(), run=run, plot=plot, quick=QUICK,
    paper="P1 appendix tables (relaxed MoLRG assumptions)", claims=claims,
    quick_fails={"lowrank_recovery_rate[K=2]": "2 seeds x 2 starts of a short training do not reach the "
                                               "optimum (certified optimisation failures); full scale 16/16"})

SWEEPABLES = ()
