#!/usr/bin/python3
"""Writes tests/fixtures/mit_daformer.h5: one PyTorch forward/backward of a small
MiT + DAFormer (daformer_sepaspp) network, for tests/test_mit_parity.c.

The encoder is Hugging Face transformers' SegformerModel (an implementation
independent of ours, in its own parameter names: segformer.encoder.*); the
DAFormer head on top is written here in plain torch with DAFormer's names
(decode_head.embed_layers.<i>.proj, decode_head.fuse_layer.aspp_modules...,
decode_head.fuse_layer.bottleneck, decode_head.conv_seg). The test maps the
encoder names with t2s_mit_foreign_names(..., T2S_MIT_NAMES_HF) -- key and
value joined into our kv -- so the fixture also checks that name map.

Stored: inputs, weights (HF / DAFormer names), logits (stride 4), loss (bilinear
upsample + cross-entropy over valid pixels), every parameter gradient, and the
BN running statistics after the train-mode forward. The reference runs in
float64 from float32 weights; the float32-vs-float64 distance of the same step
is stored as an attribute (the floor any float32 implementation can reach).

Needs transformers (pip install transformers==4.40.2 works with torch 1.13).
Run from the repository root:  /usr/bin/python3 tools/make_mit_fixture.py
"""

import argparse
import copy
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import SegformerConfig
from transformers.models.segformer.modeling_segformer import SegformerModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_h5 import create_file, put  # noqa: E402

# A B0-like encoder, narrower and shallower so that the file stays small; every
# structural feature is kept: four stages, sr 8/4/2/1, several heads, two blocks
# in the first stage (residual chains), 7x7/4 and 3x3/2 patch embeddings.
NET = dict(embed_dims=(8, 16, 24, 32), heads=(1, 2, 3, 4), depths=(2, 1, 1, 1),
           sr_ratios=(8, 4, 2, 1), mlp_ratio=4, channels=16,
           dilations=(1, 6, 12, 18), num_classes=5)
LN_EPS = 1e-5  # HF uses nn.LayerNorm's default everywhere
# The published variants (the benchmark builds these; tools/bench_step_pytorch.py).
MIT_VARIANTS = {
    "mit_b0": dict(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    "mit_b1": dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2)),
    "mit_b2": dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3)),
    "mit_b3": dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3)),
    "mit_b4": dict(embed_dims=(64, 128, 320, 512), depths=(3, 8, 27, 3)),
    "mit_b5": dict(embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3)),
}
BATCH, HEIGHT, WIDTH = 2, 64, 64
IGNORE_INDEX = 255
IGNORE_FRACTION = 0.1
SEED = 20240611


class ConvModule(nn.Module):
    """conv (no bias) + BN + ReLU, mmcv's names: .conv, .bn."""

    def __init__(self, cin, cout, k, dilation=1, groups=1):
        super().__init__()
        pad = 0 if k == 1 else dilation * (k // 2)
        self.conv = nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class SepConv(nn.Module):
    """mmcv DepthwiseSeparableConvModule: depthwise 3x3 + BN + ReLU, pointwise."""

    def __init__(self, cin, cout, dilation):
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, 3, dilation, groups=cin)
        self.pointwise_conv = ConvModule(cin, cout, 1)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class ASPPWrapper(nn.Module):
    def __init__(self, cin, channels, dilations):
        super().__init__()
        self.aspp_modules = nn.ModuleList(
            [ConvModule(cin, channels, 1) if d == 1 else SepConv(cin, channels, d)
             for d in dilations])
        self.bottleneck = ConvModule(len(dilations) * channels, channels, 3)

    def forward(self, x):
        return self.bottleneck(torch.cat([m(x) for m in self.aspp_modules], 1))


class Embed(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj = nn.Linear(cin, cout)

    def forward(self, x):
        n, _, h, w = x.shape
        y = self.proj(x.flatten(2).transpose(1, 2))
        return y.transpose(1, 2).reshape(n, -1, h, w)


class DAFormerHead(nn.Module):
    def __init__(self, in_channels, channels, dilations, num_classes, dropout=0.0):
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.embed_layers = nn.ModuleDict(
            {str(i): Embed(c, channels) for i, c in enumerate(in_channels)})
        self.fuse_layer = ASPPWrapper(len(in_channels) * channels, channels,
                                      dilations)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats):
        size = feats[0].shape[2:]
        levels = []
        for i, f in enumerate(feats):
            y = self.embed_layers[str(i)](f)
            if y.shape[2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            levels.append(y)
        return self.conv_seg(self.dropout(self.fuse_layer(torch.cat(levels, 1))))


class Net(nn.Module):
    """HF SegFormer encoder + the DAFormer head; net: a dict like NET."""

    def __init__(self, net=None, drop_path=0.0, dropout=0.0):
        super().__init__()
        net = NET if net is None else net
        cfg = SegformerConfig(
            num_channels=3, num_encoder_blocks=4, depths=list(net["depths"]),
            sr_ratios=list(net["sr_ratios"]), hidden_sizes=list(net["embed_dims"]),
            patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
            num_attention_heads=list(net["heads"]),
            mlp_ratios=[net["mlp_ratio"]] * 4, hidden_act="gelu",
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            drop_path_rate=drop_path, layer_norm_eps=LN_EPS)
        self.segformer = SegformerModel(cfg)
        self.decode_head = DAFormerHead(net["embed_dims"], net["channels"],
                                        net["dilations"], net["num_classes"], dropout)

    def forward(self, x):
        feats = self.segformer(x, output_hidden_states=True).hidden_states
        return self.decode_head(list(feats))


def init_random_(model, g):
    """Weights of order one per output so that every path carries signal:
    linear / conv ~ N(0, 1/fan_in), biases and norm shifts ~ N(0, 0.1), norm
    scales ~ U(0.5, 1.5), BN running statistics away from 0/1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def make_batch(gen):
    image = torch.randn(BATCH, 3, HEIGHT, WIDTH, generator=gen)
    label = torch.randint(0, NET["num_classes"], (BATCH, HEIGHT, WIDTH), generator=gen)
    ignored = torch.rand(BATCH, HEIGHT, WIDTH, generator=gen) < IGNORE_FRACTION
    label[ignored] = IGNORE_INDEX
    return image, label.to(torch.uint8)


def seg_loss(logits, label):
    up = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, label.long(), ignore_index=IGNORE_INDEX, reduction="mean")


def run_step(model, image, label, dtype):
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    model.to(dtype).train()
    model.zero_grad()
    logits = model(image.to(dtype))
    loss = seg_loss(logits, label)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()
               if not n.endswith("num_batches_tracked")}
    return dict(weights=weights, logits=logits.detach(), loss=loss.detach(),
                grads=grads, buffers_after=buffers)






def write(path, model, image, label, out, f32_err):
    with create_file(path, ("input", "weights", "grads", "buffers_after")) as f:
        for k, v in NET.items():
            f.attrs[k] = np.asarray(v, dtype=np.int64) if isinstance(v, tuple) else int(v)
        f.attrs["format"] = "t2sda-parity"
        f.attrs["ln_eps"] = LN_EPS
        f.attrs["torch_version"] = str(torch.__version__)
        import transformers
        f.attrs["transformers_version"] = transformers.__version__
        f.attrs["seed"] = SEED
        f.attrs["reference_precision"] = "float64"
        f.attrs["f32_vs_f64_worst_grad_rel_err"] = f32_err
        f.attrs["param_names"] = [n for n, _ in model.named_parameters()]
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


def check(path):
    """Re-read: load /weights into a fresh float32 network and replay the loss."""
    with h5py.File(path, "r") as f:
        model = Net()
        sd = {k: torch.as_tensor(np.asarray(f["weights"][k][()])) for k in f["weights"]}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), \
            (missing, unexpected)
        for grp in ("weights", "grads", "buffers_after"):
            for k, ds in f[grp].items():
                assert np.all(np.isfinite(ds[()])), f"{grp}/{k} not finite"
        model.train()
        loss = seg_loss(model(torch.from_numpy(f["input/image"][()])),
                        torch.from_numpy(f["input/label"][()]))
        stored = float(f["loss"][()])
        assert abs(float(loss) - stored) < 1e-4 * max(1.0, abs(stored)), (float(loss), stored)
        return stored, len(f["grads"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
        "mit_daformer.h5"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = Net()
    init_random_(model, gen)
    image, label = make_batch(gen)
    f32 = run_step(copy.deepcopy(model), image, label, torch.float32)
    out = run_step(model, image, label, torch.float64)
    # Key biases get a zero gradient (softmax ignores a per-row constant), so each
    # tensor's error is measured against max(its own scale, 1e-3 x the largest
    # gradient of the network); tests/test_mit_parity.c uses the same floor.
    floor = 1e-3 * max(float(g.abs().max()) for g in out["grads"].values())
    f32_err = max(float((f32["grads"][n].double() - g).abs().max()) /
                  max(float(g.abs().max()), floor) for n, g in out["grads"].items())
    print(f"float32 vs float64 worst gradient error: {f32_err:.2e}")
    path = os.path.abspath(args.out)
    tmp = path + ".tmp"
    write(tmp, model, image, label, out, f32_err)
    loss, n = check(tmp)
    os.replace(tmp, path)
    print(f"wrote {path}: {os.path.getsize(path) / 1e6:.2f} MB, loss {loss:.6f}, "
          f"logits {tuple(out['logits'].shape)}, {n} parameters")


if __name__ == "__main__":
    main()
