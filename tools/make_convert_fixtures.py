#!/usr/bin/python3
"""Writes the tests/fixtures/convert_* files: weights in PyTorch's and other
codebases' formats and namings, for the t2sda_convert tests.

A tiny ResNet-18-V1c + DeepLab-V2 (tools/torch_reference.py, mmseg names) with
random weights is saved as

  convert_resnet18.pth          torch.save(state_dict) (zip format)
  convert_resnet18.safetensors  the same tensors, safetensors written here by
                                hand from the format's specification
  convert_resnet18_wrapped.pth  {'meta', 'state_dict' with 'module.' names, 'optimizer'}
  convert_mmcv_backbone.pth     bare backbone, mmcv ImageNet names (stem.0.weight, fc.*)
  convert_torchvision.pth       bare backbone, torchvision names (7x7 conv1, bn1, fc)
  convert_timm_deepstem.safetensors  bare backbone, timm deep-stem names (conv1.0, ..., bn1)
  convert_parity.h5             an input and the eval-mode logits of the network

and files that exercise the readers:

  convert_dtypes.pth            half, bfloat16, double, int64, non-contiguous
                                views, storage offsets, shared storages, a 0-d
                                tensor, an nn.Parameter; values by formula (see
                                tests/test_convert_pth.c)
  convert_dtypes.safetensors    F16, BF16, F64, I64, F32 with the same values
  convert_bad_global.pth        a checkpoint whose pickle names builtins.print
                                (the reader must refuse it, never call it)
  convert_legacy.pth            torch.save(..., _use_new_zipfile_serialization=False)

Run from the repository root:  /usr/bin/python3 tools/make_convert_fixtures.py
torch.save's zip entries carry no timestamps that change, so regenerating
unchanged fixtures leaves nothing to commit (the HDF5 file is written without
object times). The legacy file embeds object ids that change every run, so it
is written only when absent.
"""

import collections
import json
import os
import struct
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402

NET = dict(depth=18, base_channels=2, stem_channels=4, strides=(1, 2, 1, 1),
           dilations=(1, 1, 2, 4), contract_dilation=True, num_classes=3,
           head_dilations=(6, 12))
SEED = 20240717
OUT = "tests/fixtures"

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16",
             torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def tensor_bytes(t):
    """Little-endian contiguous bytes (bfloat16 has no numpy dtype)."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def write_safetensors(path, tensors, metadata=None):
    """safetensors from its specification: u64 header size, JSON header,
    gap-free data buffer. Tensors keep the given order."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def make_model():
    gen = torch.Generator().manual_seed(SEED)
    model = ref.DeepLabV2(**NET)
    ref.init_random_(model, gen)
    # Non-zero counters, to show that they are skipped on import.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.num_batches_tracked.fill_(7)
    return model.eval(), gen


def backbone_only(sd):
    return collections.OrderedDict(
        (k[len("backbone."):], v) for k, v in sd.items()
        if k.startswith("backbone."))


def imagenet_head(gen, in_channels):
    return {"fc.weight": torch.randn(10, in_channels, generator=gen),
            "fc.bias": torch.randn(10, generator=gen)}


def torchvision_names(bb, gen):
    """torchvision ResNet: the same layer names, a 7x7 stem and fc."""
    out = collections.OrderedDict()
    c = NET["stem_channels"]
    out["conv1.weight"] = torch.randn(c, 3, 7, 7, generator=gen) * 0.1
    for k in ("weight", "bias", "running_mean", "running_var"):
        out["bn1." + k] = torch.rand(c, generator=gen) + 0.5
    out["bn1.num_batches_tracked"] = torch.tensor(5)
    out.update((k, v) for k, v in bb.items() if not k.startswith("stem."))
    out.update(imagenet_head(gen, bb["layer4.1.conv2.weight"].shape[0]))
    return out


def timm_deepstem_names(bb, gen):
    """timm deep stem ('c' variants): conv1.{0,1,3,4,6} and bn1 for stem.7."""
    rename = {"stem.0.": "conv1.0.", "stem.1.": "conv1.1.", "stem.3.": "conv1.3.",
              "stem.4.": "conv1.4.", "stem.6.": "conv1.6.", "stem.7.": "bn1."}
    out = collections.OrderedDict()
    for k, v in bb.items():
        for a, b in rename.items():
            if k.startswith(a):
                k = b + k[len(a):]
        out[k] = v
    out.update(imagenet_head(gen, bb["layer4.1.conv2.weight"].shape[0]))
    return out


def dtype_tensors():
    """Values by formula, mirrored in tests/test_convert_pth.c."""
    base = (torch.arange(12, dtype=torch.float32) * 0.25 - 1.0).reshape(3, 4)
    shared = torch.arange(10, dtype=torch.float32)
    return collections.OrderedDict([
        ("f32", base.clone()),
        ("f16", base.half()),
        ("bf16", base.bfloat16()),
        ("f64", base.double()),
        ("i64", torch.arange(6, dtype=torch.int64).reshape(2, 3) * 1000000007),
        ("transposed", base.t()),              # (4, 3), strides (1, 4)
        ("slice", base[1:, 2:]),               # (2, 2), offset 6
        ("shared_a", shared[:5]),              # one storage, two views
        ("shared_b", shared[5:].view(5, 1)),
        ("scalar", torch.tensor(3.5)),
        ("param", torch.nn.Parameter(base.clone() * 2)),
    ])


class Refused:
    """Pickles as builtins.print('...'): a global a state dict never needs."""

    def __reduce__(self):
        return (print, ("t2sda fixture: a weights reader must refuse this",))


def write_parity(path, model, gen):
    image = torch.randn(1, 3, 32, 32, generator=gen)
    with torch.no_grad():
        logits = model(image)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fid = h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)
    with h5py.File(fid) as f:
        f.create_dataset("input", data=image.numpy(), track_times=False)
        f.create_dataset("logits", data=logits.numpy(), track_times=False)
        for k, v in NET.items():
            f.attrs[k] = np.asarray(v, dtype=np.int64) if isinstance(v, tuple) else int(v)
        f.attrs["mode"] = "eval"
        f.attrs["torch_version"] = str(torch.__version__)
    return logits


def check(model, sd):
    """Re-reads what was written with PyTorch and compares."""
    back = torch.load(os.path.join(OUT, "convert_resnet18.pth"))
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    wrapped = torch.load(os.path.join(OUT, "convert_resnet18_wrapped.pth"))
    assert torch.equal(wrapped["state_dict"]["module.backbone.stem.0.weight"],
                       sd["backbone.stem.0.weight"])
    fresh = ref.DeepLabV2(**NET)
    fresh.load_state_dict(back, strict=True)


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    model, gen = make_model()
    sd = model.state_dict()
    p = lambda name: os.path.join(OUT, name)  # noqa: E731

    torch.save(sd, p("convert_resnet18.pth"))
    write_safetensors(p("convert_resnet18.safetensors"), sd,
                      {"format": "pt", "source": "tools/make_convert_fixtures.py"})
    wrapped = {"meta": {"iter": 40000, "CLASSES": ("road", "car", "sky"),
                        "config": "model = dict(type='EncoderDecoder')"},
               "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
               "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}}
    torch.save(wrapped, p("convert_resnet18_wrapped.pth"))

    bb = backbone_only(sd)
    mmcv = collections.OrderedDict(bb)
    mmcv.update(imagenet_head(gen, bb["layer4.1.conv2.weight"].shape[0]))
    torch.save(mmcv, p("convert_mmcv_backbone.pth"))
    torch.save(torchvision_names(bb, gen), p("convert_torchvision.pth"))
    write_safetensors(p("convert_timm_deepstem.safetensors"), timm_deepstem_names(bb, gen))

    dt = dtype_tensors()
    torch.save(dt, p("convert_dtypes.pth"))
    write_safetensors(p("convert_dtypes.safetensors"),
                      collections.OrderedDict((k, dt[k]) for k in ("f32", "f16", "bf16", "f64", "i64")),
                      {"purpose": "dtype coverage"})
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": Refused()}, p("convert_bad_global.pth"))
    if not os.path.exists(p("convert_legacy.pth")):  # legacy files embed object ids
        torch.save({"w": torch.zeros(2)}, p("convert_legacy.pth"),
                   _use_new_zipfile_serialization=False)

    logits = write_parity(p("convert_parity.h5"), model, gen)
    check(model, sd)
    total = sum(os.path.getsize(p(f)) for f in os.listdir(OUT) if f.startswith("convert_"))
    print(f"wrote tests/fixtures/convert_*: {total / 1024:.0f} KiB in all; "
          f"{len(sd)} tensors, |logits| <= {logits.abs().max():.3f}")


if __name__ == "__main__":
    main()
