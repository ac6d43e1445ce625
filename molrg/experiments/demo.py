"""A short end-to-end demo: sample a MoLRG, denoise it at several noise levels.

Compares, per noise level, the exact optimal denoiser with the memorising (empirical)
optimal denoiser built on a finite training set: MSE to the clean signal on fresh test
points, and the accuracy of the Bayes classifier argmax_k p(k | x_t).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import molrg
from molrg.study import Experiment, Progress, Results, load_results, save_figure
from molrg.study.plotting import FULL_WIDTH, mark_quick, paper_style, plain_log_ticks


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    n: int = 50  # ambient dimension
    K: int = 3  # number of classes (subspaces)
    d: int = 5  # dimension of each class's subspace
    delta: float = 0.2  # scale of the class-irrelevant detail on the other subspaces
    num_train: int = 2000  # training samples the memorising (empirical) denoiser is built on
    num_test: int = 4000  # fresh test samples per noise level
    sigmas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # noise levels
    seed: int = 0  # PRNG seed of the mixture, the data and the noise

    def validate(self):
        if self.d * self.K > self.n:
            raise ValueError(f"d: need K * d <= n; got {self.K} * {self.d} > {self.n}")
        if min(self.sigmas) <= 0:
            raise ValueError("sigmas: every sigma must be > 0")
        for f in ("num_train", "num_test", "n", "K", "d"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be >= 1")


def run(cfg: DemoConfig, verbose: bool = True) -> Results:
    keys = list(jax.random.split(jax.random.key(cfg.seed), 4))
    mix = molrg.random_molrg(keys[0], n=cfg.n, K=cfg.K, d=cfg.d, delta=cfg.delta)
    train, _ = mix.sample(keys[1], cfg.num_train)
    x0, labels = mix.sample(keys[2], cfg.num_test)
    eps = jax.random.normal(keys[3], x0.shape, x0.dtype)
    rows = []
    prog = Progress(len(cfg.sigmas), "sigma grid", enabled=verbose)
    for sigma in cfg.sigmas:
        xt = x0 + sigma * eps
        exact, post = molrg.denoise(mix, xt, sigma, return_posterior=True)
        emp = molrg.empirical_denoise(train, xt, sigma)
        mse = lambda a: float(jnp.mean(jnp.sum((a - x0) ** 2, axis=1)))  # noqa: E731
        rows.append({"sigma": sigma, "mse_exact": mse(exact), "mse_empirical": mse(emp),
                     "mse_identity": mse(xt), "bayes_accuracy": float(jnp.mean(jnp.argmax(post, 1).astype(labels.dtype) == labels))})
        prog.update(1)
    if verbose:
        print("   sigma   MSE exact   MSE empirical   Bayes acc")
        for r in rows:
            print(f"  {r['sigma']:6.3f}   {r['mse_exact']:9.4f}   {r['mse_empirical']:13.4f}   {r['bayes_accuracy']:.3f}")
    return Results(scalars={"signal_energy": float(jnp.mean(jnp.sum(x0**2, 1)))}, tables={"demo": rows})


def plot(results_dir: str, fig_dir: str) -> list[str]:
    import matplotlib.pyplot as plt
    res = load_results(results_dir)
    rows = res["tables"]["demo"]
    s = np.array([r["sigma"] for r in rows])
    with paper_style():
        fig, (a, b) = plt.subplots(1, 2, figsize=(FULL_WIDTH, 2.6), layout="constrained")
        a.loglog(s, [r["mse_exact"] for r in rows], "o-", label="exact optimal denoiser")
        a.loglog(s, [r["mse_empirical"] for r in rows], "s--",
                 label=f"empirical (N={res['manifest']['config']['num_train']})")
        a.loglog(s, [r["mse_identity"] for r in rows], ":", color="gray", label="identity (no denoising)")
        a.set_xlabel(r"noise level $\sigma$")
        a.set_ylabel(r"MSE  $E\|\hat x_0 - x_0\|^2$")
        a.legend()
        a.set_title("denoising error")
        b.semilogx(s, [r["bayes_accuracy"] for r in rows], "o-")
        b.set_xlabel(r"noise level $\sigma$")
        b.set_ylabel(r"accuracy of $\arg\max_k p(k\,|\,x_t)$")
        b.set_ylim(0, 1.02)
        b.set_title("Bayes classifier")
        for ax in (a, b):
            plain_log_ticks(ax)  # 0.01, 1, 10: no mathtext superscripts under 7 pt
        mark_quick(fig, res)
        return save_figure(fig, fig_dir, "demo")


EXPERIMENT = Experiment(name="demo", cost=3, summary="sample a MoLRG, denoise it exactly and by memorisation across noise levels",
         config=DemoConfig(), run=run, plot=plot,
         quick={"num_train": 500, "num_test": 1000}, paper="(sanity demo)")

SWEEPABLES = ()
