"""Claims of the trained-MLP memorisation study (P1's memorisation story, trained networks).

``mlp_memorization_shape`` -- P1: a diffusion model that memorises loses the interior peak
of its SNR-versus-noise curve, and one that generalises has it. Measured with
:mod:`molrg.experiments.mlp_memorization` at a fixed scale (below): MLPs trained on N
samples of P1's Fig. 3 mixture, each final model classified from its generated samples
(:func:`~molrg.experiments.mlp_memorization.classify`: memorising = copy fraction >= 1/2;
generalising = copy fraction <= 0.05 *and* samples on the data's support, mean distance
to the union of subspaces at most 1.5x that of fresh true samples; thresholds fixed
before measuring). Its output-SNR curve on test inputs at P1's 14 DDPM timesteps gets the
verdict of :func:`molrg.metrics.unimodality` with z = 3 standard errors over the test
inputs. Two claims: every memorising model has no interior peak; every generalising model
has one. A claim with no model in its group is a FAIL (nothing supports it), reported with
the numbers of every model.

Scales are fixed here, never tuned to a verdict.
"""

from __future__ import annotations

from molrg.checks import Claim, check

# Quick: the same static shapes as the quick experiment where possible (shared compiles).
_QUICK = {"N_values": "16,256", "widths": "64", "num_seeds": 1, "segment_steps": 500,
          "num_segments": 2, "num_test": 300, "num_samples": 128, "sample_steps": 50}
# Full: the experiment's default config (the experiment then reuses these models in-process).
_FULL = {"N_values": "16,4096", "widths": "256", "num_seeds": 1, "segment_steps": 2000,
         "num_segments": 5}


@check("mlp_memorization_shape")
def mlp_memorization_shape(quick: bool):
    from molrg.experiments import mlp_memorization as mm
    from molrg.runner import apply_overrides

    cfg = apply_overrides(mm.MLPMemorizationConfig(), _QUICK if quick else _FULL)
    res = mm.run(cfg, verbose=False)
    final = [r for r in res.tables["models"] if r["final"]]
    per_model = [f"W{r['width']}/N{r['N']}/s{r['seed']}: copy {r['copy_fraction']:.2f}, NN ratio "
                 f"{r['nn_ratio']:.2f}, union dist {r['union_distance']:.2f} (ref "
                 f"{r['union_distance_ref']:.2f}) -> {mm.group_of(r)}; "
                 f"{r['verdict_test']}, gain {r['peak_gain_test']:.3f}+-{r['peak_gain_stderr_test']:.3f}"
                 for r in final]
    setting = {"steps": cfg.steps, "lr": cfg.learning_rate, "batch": cfg.batch_size,
               "widths": list(cfg.widths), "N": list(cfg.N_values), "seeds": cfg.num_seeds,
               "exact_denoiser": res.scalars["exact"]["verdict"]}
    claims = []
    for group, want, statement in (
            ("memorising", False, "memorising MLPs (copy fraction >= 1/2) have no interior SNR peak"),
            ("generalising", True, "generalising MLPs (no copies, samples on the support) have an "
                                   "interior SNR peak")):
        rows = [r for r in final if mm.group_of(r) == group]
        hits = [(r["verdict_test"] == "interior peak") == want for r in rows]
        claims.append(Claim(
            f"mlp_memorization_shape[{group}]",
            f"P1: {statement} (trained in P1's Fig. 3 setting; output SNR on test inputs)",
            {"models_in_group": len(rows), "agreeing": int(sum(hits)), **setting, "models": per_model},
            "metrics.unimodality with z = 3 test-input standard errors per model, 1% relative floor; "
            "every model of the group must agree, and the group must be non-empty",
            bool(rows) and all(hits)))
    return claims
