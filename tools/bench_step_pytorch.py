#!/usr/bin/python3
"""Times one PyTorch training step of t2sda's DeepLab-V2 network.

forward (train-mode BN) + loss + backward + SGD step of
tools/torch_reference.py's ResNet-V1c + DLV2 head on a random batch, and
prints ONE JSON line, comparable with the C step benchmark:

  ms_per_iter   median over --iters timed steps (after --warmup untimed ones)
  images_per_s  batch / median step time
  gflop_per_s   model FLOPs / median step time, where model FLOPs =
                3 * 2 * (conv multiply-accumulates of one forward): the
                forward conv FLOPs, x3 for forward + backward (grad input +
                grad weight). BN, ReLU, pooling, resize and loss are not
                counted, the same convention as the C benchmark.

Example: /usr/bin/python3 tools/bench_step_pytorch.py --depth 50 \
    --base-channels 64 --batch 2 --crop 256 256 --num-classes 19 --threads 2

--backbone mit_b0..mit_b5 times MiT + daformer_sepaspp instead (the network of
tools/make_mit_fixture.py: Hugging Face's SegFormer encoder, drop path 0.1, and
the DAFormer head with channel dropout 0.1; needs transformers). Its FLOPs count
the convolutions and linear layers (not the attention products).

--mode sets the arithmetic on CUDA: fp32 (TF32 off), tf32 (matmul and cuDNN in TF32),
amp_bf16 (autocast to bf16), amp_bf16_channels_last (the same, model and input in
channels_last); default leaves PyTorch's own settings (cuDNN TF32 on).
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=50,
                    choices=sorted(ref.ARCH_SETTINGS))
    ap.add_argument("--backbone", default="resnet_v1c",
                    help="resnet_v1c, or mit_b0..mit_b5 (with the DAFormer head)")
    ap.add_argument("--base-channels", type=int, default=64)
    ap.add_argument("--stem-channels", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--crop", type=int, nargs=2, default=(256, 256),
                    metavar=("W", "H"), help="crop width and height "
                    "(the order of the config's data.crop)")
    ap.add_argument("--num-classes", type=int, default=19)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.0025)
    ap.add_argument("--device", default="cpu",
                    help="cpu, or cuda where this torch build has CUDA")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", default="default",
                    choices=("default", "fp32", "tf32", "amp_bf16",
                             "amp_bf16_channels_last"))
    args = ap.parse_args()
    if args.iters < 1 or args.warmup < 0 or args.batch < 1:
        ap.error("--iters and --batch must be >= 1 and --warmup >= 0")
    return args


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mit_model(args, height, width):
    """MiT-Bx + daformer_sepaspp, and its conv + linear forward MACs."""
    import make_mit_fixture as mit  # noqa: E402 (needs transformers)
    net = dict(mit.MIT_VARIANTS[args.backbone], heads=(1, 2, 5, 8),
               sr_ratios=(8, 4, 2, 1), mlp_ratio=4, channels=256,
               dilations=(1, 6, 12, 18), num_classes=args.num_classes)
    model = mit.Net(net, drop_path=0.1, dropout=0.1)
    macs = [0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Linear):
            macs[0] += out.numel() * mod.in_features
        else:
            k = mod.weight[0].numel()  # (Cin / groups) kh kw
            macs[0] += out.numel() * k
    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(args.batch, 3, height, width))
    for h in hooks:
        h.remove()
    return model, macs[0]


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    width, height = args.crop

    if args.backbone.startswith("mit_"):
        model, fwd_macs = mit_model(args, height, width)
    else:
        model = ref.DeepLabV2(depth=args.depth, base_channels=args.base_channels,
                              stem_channels=args.stem_channels,
                              num_classes=args.num_classes)
        ref.init_random_(model, torch.Generator().manual_seed(args.seed))
        fwd_macs = ref.conv_forward_macs(model, (args.batch, 3, height, width))
    if args.mode != "default":
        torch.backends.cuda.matmul.allow_tf32 = args.mode == "tf32"
        torch.backends.cudnn.allow_tf32 = args.mode == "tf32"
    channels_last = args.mode.endswith("_channels_last")
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = ref.make_sgd(model, lr=args.lr)

    image = torch.randn(args.batch, 3, height, width, device=device)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    label = torch.randint(0, args.num_classes, (args.batch, height, width),
                          device=device)

    def autocast():
        if args.mode.startswith("amp_bf16"):
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = ref.seg_loss(model(image), label)
        loss.backward()
        opt.step()

    times = []
    for i in range(args.warmup + args.iters):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)

    median_s = statistics.median(times)
    step_flop = 3 * 2 * fwd_macs
    print(json.dumps({
        "bench": "step", "impl": "pytorch",
        "torch_version": str(torch.__version__), "device": str(device),
        "backbone": args.backbone, "mode": args.mode,
        "depth": args.depth, "base_channels": args.base_channels,
        "stem_channels": args.stem_channels, "batch": args.batch,
        "crop": [width, height], "num_classes": args.num_classes,
        "threads": args.threads, "iters": args.iters,
        "warmup": args.warmup,
        "ms_per_iter": round(median_s * 1e3, 3),
        "ms_min": round(min(times) * 1e3, 3),
        "ms_max": round(max(times) * 1e3, 3),
        "images_per_s": round(args.batch / median_s, 3),
        "fwd_gflop": round(2 * fwd_macs / 1e9, 4),
        "step_gflop": round(step_flop / 1e9, 4),
        "gflop_per_s": round(step_flop / median_s / 1e9, 3),
    }))


if __name__ == "__main__":
    main()
