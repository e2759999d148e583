#!/usr/bin/env python3
"""Writes tests/fixtures/optim_reference.h5: torch.optim.SGD and AdamW (with
parameter groups: head lr x10, no decay on biases) and clip_grad_norm_ applied
to fixed tensors and gradients for three steps. tests/test_optim.c replays the
same steps with core/optim.c and compares.

Run: /usr/bin/python3 tools/make_optim_fixture.py (needs Debian's python3-torch)."""
import os
import h5py
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "optim_reference.h5")
NAMES = ["a.weight", "a.bias", "decode_head.weight"]
SHAPES = [(4, 3), (4,), (2, 4)]
STEPS = 3


def make_params(gen):
    return [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in SHAPES]


def groups(params, lr, wd):
    # weights decay, biases don't; decode_head gets lr x10 (as core/optim.c's lr_mult)
    return [
        {"params": [params[0]], "lr": lr, "weight_decay": wd},
        {"params": [params[1]], "lr": lr, "weight_decay": 0.0},
        {"params": [params[2]], "lr": lr * 10, "weight_decay": wd},
    ]


def run(kind, f, gen_seed=0, clip=0.0):
    gen = torch.Generator().manual_seed(gen_seed)
    params = make_params(gen)
    init = [p.detach().clone() for p in params]
    grads = [[torch.randn(*s, generator=gen) for s in SHAPES] for _ in range(STEPS)]
    lrs = [0.01, 0.008, 0.005] if kind == "sgd" else [6e-4, 5e-4, 4e-4]
    if kind == "sgd":
        opt = torch.optim.SGD(groups(params, lrs[0], 5e-4), lr=lrs[0], momentum=0.9)
    else:
        opt = torch.optim.AdamW(groups(params, lrs[0], 0.01), lr=lrs[0], betas=(0.9, 0.999), eps=1e-8)
    g = f.create_group(kind + ("_clip" if clip else ""))
    g.attrs["clip"] = clip
    g.attrs["lrs"] = np.array(lrs)
    for n, t in zip(NAMES, init):
        g[f"init/{n}"] = t.numpy()
    for step in range(STEPS):
        for pg, mult in zip(opt.param_groups, [1, 1, 10]):
            pg["lr"] = lrs[step] * mult
        for p, gr in zip(params, grads[step]):
            p.grad = gr.clone()
        for n, gr in zip(NAMES, grads[step]):
            g[f"grad{step}/{n}"] = gr.numpy()
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            g.attrs[f"norm{step}"] = float(norm)
        opt.step()
        for n, p in zip(NAMES, params):
            g[f"after{step}/{n}"] = p.detach().numpy().copy()


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with h5py.File(OUT, "w") as f:
        f.attrs["torch_version"] = str(torch.__version__).encode()
        run("sgd", f, 1)
        run("adamw", f, 2)
        run("sgd", f, 3, clip=1.5)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
