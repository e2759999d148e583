#!/usr/bin/python3
"""Writes tests/fixtures/parity_resnet_dlv2.h5: one PyTorch training step.

A small ResNet-50-V1c + DeepLab-V2 (tools/torch_reference.py) with random
weights takes one forward (train-mode BN) + backward + SGD step on a random
batch; everything before and after is stored so the C network can be checked
tensor by tensor: logits, loss, every parameter gradient, the BN running
statistics after the forward, and the parameters after the step.

Run from the repository root:  /usr/bin/python3 tools/make_parity_fixture.py
Layout and conventions: tests/fixtures/README.md.
"""

import argparse
import copy
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402
from fixture_h5 import create_file, put  # noqa: E402

NET = dict(depth=50, base_channels=4, stem_channels=8, strides=(1, 2, 1, 1),
           dilations=(1, 1, 2, 4), contract_dilation=True, num_classes=5,
           head_dilations=(6, 12))
OPTIM = dict(lr=0.01, momentum=0.9, weight_decay=5e-4, head_lr_mult=10.0)
BATCH, HEIGHT, WIDTH = 2, 64, 64
IGNORE_FRACTION = 0.1
SEED = 20240601
CONDITIONING = {}


def make_batch(gen):
    image = torch.randn(BATCH, 3, HEIGHT, WIDTH, generator=gen)
    label = torch.randint(0, NET["num_classes"], (BATCH, HEIGHT, WIDTH),
                          generator=gen)
    ignored = torch.rand(BATCH, HEIGHT, WIDTH, generator=gen) < IGNORE_FRACTION
    label[ignored] = ref.IGNORE_INDEX
    return image, label.to(torch.uint8)






def run_step(model, image, label, dtype=torch.float64):
    """Forward, loss, backward, SGD step; returns everything to store."""
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # The reference runs in float64 from the float32 weights and inputs, so the
    # stored values carry no float32 rounding of their own (stored as float32).
    model.to(dtype)
    image = image.to(dtype)
    model.train()
    opt = ref.make_sgd(model, **OPTIM)
    opt.zero_grad()
    logits = model(image)
    loss = ref.seg_loss(logits, label)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    buffers_after = {n: b.detach().clone() for n, b in model.named_buffers()}
    opt.step()
    updated = {n: p.detach().clone() for n, p in model.named_parameters()}
    return dict(weights=weights, logits=logits.detach(), loss=loss.detach(),
                grads=grads, buffers_after=buffers_after, updated=updated)


def write(path, model, image, label, out):
    with create_file(path, ("input", "weights", "grads", "buffers_after", "updated")) as f:
        for k, v in NET.items():
            f.attrs[k] = np.asarray(v, dtype=np.int64) \
                if isinstance(v, tuple) else int(v)
        for k, v in OPTIM.items():
            f.attrs[k] = float(v)
        f.attrs["format"] = "t2sda-parity"
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["seed"] = SEED
        f.attrs["reference_precision"] = "float64"
        for k, v in CONDITIONING.items():
            f.attrs[k] = v
        f.attrs["bn_eps"] = 1e-5
        f.attrs["bn_momentum"] = 0.1
        f.attrs["ignore_index"] = ref.IGNORE_INDEX
        f.attrs["loss_reduction"] = "valid_pixels"
        f.attrs["valid_pixels"] = int((label != ref.IGNORE_INDEX).sum())
        # Forward order of the parameters and buffers (state_dict order).
        f.attrs["param_names"] = [n for n, _ in model.named_parameters()]
        f.attrs["buffer_names"] = [n for n, _ in model.named_buffers()]

        put(f, "input/image", image)
        put(f, "input/label", label)
        for n, t in out["weights"].items():
            put(f, f"weights/{n}", t)
        put(f, "logits", out["logits"])
        put(f, "loss", out["loss"].to(torch.float32))
        for n, t in out["grads"].items():
            put(f, f"grads/{n}", t)
        for n, t in out["buffers_after"].items():
            put(f, f"buffers_after/{n}", t)
        params = dict(model.named_parameters())
        for n, t in out["updated"].items():
            ds = put(f, f"updated/{n}", t)
            lr_mult, decay_mult = ref.param_multipliers(
                n, params[n], OPTIM["head_lr_mult"])
            ds.attrs["lr"] = OPTIM["lr"] * lr_mult
            ds.attrs["weight_decay"] = OPTIM["weight_decay"] * decay_mult


def check(path):
    """Re-read the file: shapes, finiteness, and that it replays.

    The replay loads /weights into a fresh network and recomputes logits and
    loss; the SGD check recomputes /updated from /weights and /grads with the
    closed form of torch's first momentum step (buffer = g + wd * w, so
    w' = w - lr * (g + wd * w)).
    """
    with h5py.File(path, "r") as f:
        names = list(f.attrs["param_names"])
        model = ref.DeepLabV2(**{k: (tuple(f.attrs[k]) if k in (
            "strides", "dilations", "head_dilations") else int(f.attrs[k]))
            for k in NET})
        sd = {k: torch.as_tensor(np.asarray(f["weights"][k][()])) for k in f["weights"]}
        model.load_state_dict(sd, strict=True)
        image = torch.from_numpy(f["input/image"][()])
        label = torch.from_numpy(f["input/label"][()])
        assert image.shape == (BATCH, 3, HEIGHT, WIDTH), image.shape
        assert label.shape == (BATCH, HEIGHT, WIDTH) and label.dtype == \
            torch.uint8
        for grp in ("weights", "grads", "updated", "buffers_after"):
            for k, ds in f[grp].items():
                a = ds[()]
                assert np.all(np.isfinite(a)), f"{grp}/{k} not finite"
        for n in names:
            shape = f["weights"][n].shape
            assert f["grads"][n].shape == shape and \
                f["updated"][n].shape == shape, n
            w = f["weights"][n][()].astype(np.float64)
            g = f["grads"][n][()].astype(np.float64)
            lr = f["updated"][n].attrs["lr"]
            wd = f["updated"][n].attrs["weight_decay"]
            expect = w - lr * (g + wd * w)
            err = np.abs(f["updated"][n][()] - expect).max()
            assert err < 1e-6, f"updated/{n}: SGD closed form off by {err}"
        model.train()
        logits = model(image)
        loss = ref.seg_loss(logits, label)
        stored_logits = torch.from_numpy(f["logits"][()])
        assert logits.shape == stored_logits.shape
        assert torch.allclose(logits, stored_logits, atol=1e-5, rtol=1e-5)
        stored_loss = float(f["loss"][()])
        assert f["loss"].shape == () and np.isfinite(stored_loss)
        assert abs(float(loss) - stored_loss) < 1e-5
        return dict(loss=stored_loss, logits_shape=tuple(stored_logits.shape),
                    num_params=len(names),
                    num_scalars=sum(f["weights"][n].size for n in names))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
        "parity_resnet_dlv2.h5"))
    ap.add_argument("--base-channels", type=int, default=NET["base_channels"],
                    help="width of the network (the file grows with its "
                    "square: 8 -> ~5 MB, 4 -> ~1.5 MB)")
    args = ap.parse_args()
    NET["base_channels"] = args.base_channels

    # One thread: the stored numbers do not depend on the machine's cores.
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = ref.DeepLabV2(**NET)
    ref.init_random_(model, gen)
    image, label = make_batch(gen)
    f32 = run_step(copy.deepcopy(model), image, label, torch.float32)
    out = run_step(model, image, label)
    # How far a float32 run of the same step is from the float64 reference: the
    # floor any float32 implementation can reach on this fixture.
    CONDITIONING["f32_vs_f64_worst_grad_rel_err"] = max(
        float((f32["grads"][n].double() - g.double()).abs().max() / g.double().abs().max())
        for n, g in out["grads"].items())
    print(f"float32 vs float64 worst gradient error: {CONDITIONING['f32_vs_f64_worst_grad_rel_err']:.2e}")

    path = os.path.abspath(args.out)
    tmp = path + ".tmp"
    write(tmp, model, image, label, out)
    summary = check(tmp)
    os.replace(tmp, path)
    size = os.path.getsize(path)
    print(f"wrote {path}: {size / 1e6:.2f} MB, loss {summary['loss']:.6f}, "
          f"logits {summary['logits_shape']}, {summary['num_params']} "
          f"parameters ({summary['num_scalars']} scalars)")


if __name__ == "__main__":
    main()
