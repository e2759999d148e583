#!/usr/bin/env python3
"""Writes tests/fixtures/losses_pull.h5: the T2S pulling loss and its gradient
computed with PyTorch autograd (vectorised, float64) on a small fixed feature map,
for tests/test_losses_fixture.c.

No sampling is involved: num_queries and num_negatives exceed the map, so every
labelled pixel is a query and every pixel of another class in the same image (mode
`keys`) or every other present class's prototype (mode `prototypes`) is a negative.

Run: /usr/bin/python3 tools/make_losses_fixture.py (needs Debian's python3-torch, h5py)."""
import os

import h5py
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "losses_pull.h5")
N, D, H, W, C, TAU, IGNORE = 2, 8, 6, 7, 5, 0.5, 255


def inputs(gen):
    q = torch.nn.functional.normalize(torch.randn(N, D, H, W, generator=gen), dim=1)
    k = torch.nn.functional.normalize(torch.randn(N, D, H, W, generator=gen), dim=1)
    y = torch.randint(0, C, (N, H, W), generator=gen)
    y[torch.rand(N, H, W, generator=gen) < 0.1] = IGNORE
    y[0][y[0] == 4] = 3  # class 4 only in image 1
    cw = 0.5 + 1.5 * torch.rand(C, generator=gen)
    return q.float(), k.float(), y.to(torch.uint8), cw.float()


def pull_loss(q, k, y, cw, mode):
    q, k, cw = q.double(), k.double(), cw.double()
    yl = y.long()
    valid = yl != IGNORE
    # prototypes: mean key per class over the batch
    kf = k.permute(0, 2, 3, 1)[valid]  # (P, D)
    lab = yl[valid]
    proto = torch.zeros(C, D, dtype=torch.float64).index_add_(0, lab, kf)
    count = torch.bincount(lab, minlength=C).double()
    present = count > 0
    proto = proto / count.clamp(min=1)[:, None]
    per_class = torch.zeros(C, dtype=torch.float64)
    for b in range(N):
        qb, kb, yb = q[b].reshape(D, -1).t(), k[b].reshape(D, -1).t(), yl[b].reshape(-1)
        for c in range(C):
            sel = yb == c
            if not sel.any():
                continue
            Q = qb[sel]
            if mode == "keys":
                neg = kb[(yb != c) & (yb != IGNORE)]
            else:
                neg = proto[[o for o in range(C) if o != c and present[o]]]
            logits = torch.cat([Q @ proto[c][:, None], Q @ neg.t()], dim=1) / TAU
            per_class[c] = per_class[c] + (torch.logsumexp(logits, 1) - logits[:, 0]).sum()
    qc = torch.bincount(yl[valid], minlength=C).double()
    l_c = per_class[present] / qc[present]
    return (cw[present] * l_c).sum() / cw[present].sum(), proto


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2305)
    q, k, y, cw = inputs(gen)
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["tau"] = TAU
        f.attrs["num_classes"] = C
        f["q"], f["k"], f["labels"], f["class_weight"] = q.numpy(), k.numpy(), y.numpy(), cw.numpy()
        f["proto_mean"] = pull_loss(q, k, y, cw, "keys")[1].float().numpy()
        for mode in ("keys", "prototypes"):
            qq = q.clone().double().requires_grad_(True)
            loss, _ = pull_loss(qq, k, y, cw, mode)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(qq.grad).all()
            f[f"{mode}/loss"] = np.array([loss.item()], dtype=np.float32)
            f[f"{mode}/grad_q"] = qq.grad.float().numpy()
            print(f"{mode}: loss {loss.item():.6f}")
    os.replace(tmp, OUT)


if __name__ == "__main__":
    main()
