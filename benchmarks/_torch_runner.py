"""PyTorch baseline for bench_training: the same MLP denoiser and training loop as molrg's.

Run with .venv-bench-torch/bin/python (never imports molrg). Usage:
    python _torch_runner.py OUT.json --n 50 --steps S --batch B [--threads T]
Architecture = molrg.networks.MLPDenoiser(n, width=128, depth=3, embed_dim=32): EDM-scaled
input, sinusoidal embedding of log sigma, GELU input layer, residual GELU blocks, linear
output, x0 = c_skip y + c_out F. Loss: mean squared x0 error with DDPM (T=500 linear) noise;
Adam lr 5e-4; minibatches by epoch permutation of a fixed 12,000-sample training set.
Timing: sample-steps per second after a warm-up of 50 steps.
"""

import argparse
import json
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = torch.randn(12000, a.n)
    betas = np.linspace(1e-4, 0.02, 500)
    abar = torch.tensor(np.cumprod(1 - betas), dtype=torch.float32)
    model = MLP(a.n)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    perm, pos = torch.randperm(12000), 0

    def step():
        nonlocal perm, pos
        if pos + a.batch > 12000:
            perm, pos = torch.randperm(12000), 0
        x0 = data[perm[pos:pos + a.batch]]
        pos += a.batch
        t = torch.randint(0, 500, (a.batch,))
        ab = abar[t]
        sigma = torch.sqrt((1 - ab) / ab)
        xt = torch.sqrt(ab)[:, None] * x0 + torch.sqrt(1 - ab)[:, None] * torch.randn_like(x0)
        y = xt / torch.sqrt(ab)[:, None]
        loss = ((model(y, sigma) - x0) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(50):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    dt = time.perf_counter() - t0
    json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": a.steps,
               "batch": a.batch, "seconds": dt, "sample_steps_per_s": a.steps * a.batch / dt,
               "final_loss": float(loss.detach())}, open(a.out, "w"))


if __name__ == "__main__":
    main()
