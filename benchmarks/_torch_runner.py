"""PyTorch baseline for bench_training: the same MLP denoiser and training loop as molrg's.

Run with .venv-bench-torch/bin/python (never imports molrg). A persistent worker, so that
bench_training can interleave its timed repeats with molrg's (``_timing.interleaved``'s
round-robin across processes)::

    python _torch_runner.py IN.npz --batch B --steps S [--threads T] [--compile]

IN.npz (written by bench_training): ``data`` (N, n) the training set, the initial parameters
``input_w/input_b``, ``block{i}_w/_b``, ``output_w/_b`` (molrg's ``(in, out)`` layout), and a
fixed evaluation set ``eval_y`` (= x_t / s), ``eval_sigma``, ``eval_x0``.

Protocol (one JSON line per reply on stdout): on start the worker evaluates the loss of the
initial parameters on the evaluation set, trains S steps from them (also the warm-up, and
``torch.compile``'s compilation with --compile), evaluates again and replies
``{"ready": true, "eval_loss_init", "eval_loss_final", ...}``; then every stdin line ``run``
times S further steps and replies ``{"seconds": ...}``; ``quit`` ends it.

Architecture = molrg.networks.MLPDenoiser(n, width=128, depth=3, embed_dim=32): EDM-scaled
input, sinusoidal embedding of log sigma, GELU input layer, residual GELU blocks, linear
output, x0 = c_skip y + c_out F. Loss: mean squared x0 error (summed over coordinates) with
DDPM (T=500 linear) noise; Adam lr 5e-4; minibatches by epoch permutation of the training set.
"""

import argparse
import json
import sys
import time

import numpy as np
import torch


class MLP(torch.nn.Module):
    def __init__(self, n, width=128, depth=3, embed_dim=32, max_freq=32.0, sigma_data=0.5):
        super().__init__()
        self.inp = torch.nn.Linear(n + embed_dim, width)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(width, width) for _ in range(depth - 1)])
        self.out = torch.nn.Linear(width, n)
        self.register_buffer("freqs", torch.tensor(np.geomspace(1.0, max_freq, embed_dim // 2), dtype=torch.float32))
        self.sd2 = sigma_data**2
        self.sd = sigma_data

    def forward(self, y, sigma):
        s2 = sigma[:, None] ** 2
        c_in = torch.rsqrt(s2 + self.sd2)
        u = torch.log(sigma)[:, None] * self.freqs[None, :]
        h = torch.nn.functional.gelu(self.inp(torch.cat([c_in * y, torch.sin(u), torch.cos(u)], -1)))
        for blk in self.blocks:
            h = h + torch.nn.functional.gelu(blk(h))
        c_skip = self.sd2 / (s2 + self.sd2)
        c_out = torch.sqrt(s2) * self.sd * torch.rsqrt(s2 + self.sd2)
        return c_skip * y + c_out * self.out(h)

    def load_molrg(self, z):
        """Copies molrg's (in, out) weights into the (out, in) torch layers."""
        layers = [("input", self.inp)] + [(f"block{i}", b) for i, b in enumerate(self.blocks)] + [("output", self.out)]
        with torch.no_grad():
            for name, layer in layers:
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(z[f"{name}_w"].T)))
                layer.bias.copy_(torch.from_numpy(z[f"{name}_b"]))


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with np.load(a.inp) as f:
        z = {k: f[k] for k in f.files}
    data = torch.from_numpy(z["data"].astype(np.float32))
    N, n = data.shape
    ev = [torch.from_numpy(z[k].astype(np.float32)) for k in ("eval_y", "eval_sigma", "eval_x0")]
    betas = np.linspace(1e-4, 0.02, 500)
    abar = torch.tensor(np.cumprod(1 - betas), dtype=torch.float32)
    model = MLP(n)
    model.load_molrg(z)
    fwd = torch.compile(model) if a.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    perm, pos = torch.randperm(N), 0

    def step():
        nonlocal perm, pos
        if pos + a.batch > N:
            perm, pos = torch.randperm(N), 0
        x0 = data[perm[pos:pos + a.batch]]
        pos += a.batch
        t = torch.randint(0, 500, (a.batch,))
        ab = abar[t]
        sigma = torch.sqrt((1 - ab) / ab)
        xt = torch.sqrt(ab)[:, None] * x0 + torch.sqrt(1 - ab)[:, None] * torch.randn_like(x0)
        y = xt / torch.sqrt(ab)[:, None]
        loss = ((fwd(y, sigma) - x0) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def eval_loss():
        with torch.no_grad():
            return float(((model(ev[0], ev[1]) - ev[2]) ** 2).sum(-1).mean())

    init = eval_loss()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    warm = time.perf_counter() - t0
    _reply({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "compile": a.compile, "eval_loss_init": init, "eval_loss_final": eval_loss(),
            "first_run_seconds": warm})
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = step()
        float(loss.detach())
        _reply({"seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
