#!/usr/bin/python3
"""Independent plain-PyTorch reference of t2sda's DeepLab-V2 network.

ResNet-V1c backbone (deep stem, dilated stages, output stride 8) + DeepLab-V2
head (summed atrous 3x3 convolutions), with exactly mmseg's parameter and
buffer names (`backbone.layer1.0.conv1.weight`, `decode_head.aspp_modules.0.
conv.bias`, ...), so a state_dict from here, from mmseg/DAFormer and from a
t2sda checkpoint are interchangeable without renaming. It imports nothing from
mmseg: it is an oracle written from the mmseg v0.16 semantics (which DAFormer
vendors), for the parity fixture and the PyTorch side of the step benchmark.

Semantics worth knowing when matching it from C:
  * Bottleneck ('pytorch' style): the stride sits on the 3x3 conv2.
  * BasicBlock: conv1 is 3x3/stride s/dilation d, conv2 is a plain 3x3 with
    padding 1 and NO dilation (this is what mmseg does; torchvision likewise).
  * contract_dilation: block 0 of a stage with dilation d > 1 uses d // 2.
  * BN is nn.BatchNorm2d(eps=1e-5, momentum=0.1) in training mode: it
    normalises with the biased batch variance but updates running_var with the
    unbiased one, var * n / (n - 1), n = N*H*W.
  * seg_loss averages over the non-ignored pixels (F.cross_entropy 'mean').
    mmseg v0.16's CrossEntropyLoss divides by ALL pixels instead (ignored ones
    count as 0); pass reduction='all_pixels' for that variant.

Import it from another script with `sys.path.insert(0, "tools")`.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = 255

# depth -> (block kind, blocks per stage); the same table as mmseg's
# ResNet.arch_settings.
ARCH_SETTINGS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


def _conv3x3(cin, cout, stride=1, dilation=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation,
                     dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = _bn(planes)
        # mmseg: padding=1, no dilation on the second conv of a BasicBlock.
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = _bn(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = _bn(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _res_layer(kind, inplanes, planes, blocks, stride, dilation,
               contract_dilation):
    block = BasicBlock if kind == "basic" else Bottleneck
    out_ch = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_ch:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out_ch, 1, stride=stride, bias=False),
            _bn(out_ch))
    first_dilation = dilation // 2 if (contract_dilation and dilation > 1) \
        else dilation
    layers = [block(inplanes, planes, stride, first_dilation, downsample)]
    layers += [block(out_ch, planes, 1, dilation, None)
               for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetV1c(nn.Module):
    """mmseg ResNetV1c: deep stem (three 3x3 convs) + max-pool + 4 stages."""

    def __init__(self, depth=50, base_channels=64, stem_channels=64,
                 strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                 contract_dilation=True):
        super().__init__()
        if depth not in ARCH_SETTINGS:
            raise ValueError(f"ResNetV1c: depth {depth} is not one of "
                             f"{sorted(ARCH_SETTINGS)}")
        kind, stage_blocks = ARCH_SETTINGS[depth]
        half = stem_channels // 2
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False), _bn(half),
            nn.ReLU(),
            nn.Conv2d(half, half, 3, stride=1, padding=1, bias=False),
            _bn(half), nn.ReLU(),
            nn.Conv2d(half, stem_channels, 3, stride=1, padding=1,
                      bias=False),
            _bn(stem_channels), nn.ReLU())
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem_channels
        for i, blocks in enumerate(stage_blocks):
            planes = base_channels * 2 ** i
            layer = _res_layer(kind, inplanes, planes, blocks, strides[i],
                               dilations[i], contract_dilation)
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes * EXPANSION[kind]
        self.out_channels = inplanes

    def forward(self, x):
        x = self.maxpool(self.stem(x))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x


class _ConvModule(nn.Module):
    """Holds `.conv` so names match mmcv's ConvModule without norm/act."""

    def __init__(self, cin, cout, dilation):
        super().__init__()
        k, pad = (1, 0) if dilation == 1 else (3, dilation)
        self.conv = nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation,
                              bias=True)

    def forward(self, x):
        return self.conv(x)


class DLV2Head(nn.Module):
    """DeepLab-V2 classifier: sum over d of conv3x3_dilated_d(x) + bias_d."""

    def __init__(self, in_channels, num_classes, dilations=(6, 12)):
        super().__init__()
        self.aspp_modules = nn.ModuleList(
            [_ConvModule(in_channels, num_classes, d) for d in dilations])

    def forward(self, x):
        out = self.aspp_modules[0](x)
        for m in self.aspp_modules[1:]:
            out = out + m(x)
        return out


class DeepLabV2(nn.Module):
    def __init__(self, depth=50, base_channels=64, stem_channels=64,
                 strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                 contract_dilation=True, num_classes=19,
                 head_dilations=(6, 12)):
        super().__init__()
        self.config = dict(depth=depth, base_channels=base_channels,
                           stem_channels=stem_channels,
                           strides=tuple(strides), dilations=tuple(dilations),
                           contract_dilation=bool(contract_dilation),
                           num_classes=num_classes,
                           head_dilations=tuple(head_dilations))
        self.backbone = ResNetV1c(depth, base_channels, stem_channels,
                                  strides, dilations, contract_dilation)
        self.decode_head = DLV2Head(self.backbone.out_channels, num_classes,
                                    head_dilations)

    def forward(self, x):
        """Logits at the backbone's output resolution (stride 8)."""
        return self.decode_head(self.backbone(x))


def seg_loss(logits, label, reduction="valid_pixels"):
    """Bilinear resize (align_corners=False) to the label size, then CE.

    label: (N, H, W) integer tensor, IGNORE_INDEX marks ignored pixels.
    reduction 'valid_pixels' = F.cross_entropy 'mean' (divide by the number
    of non-ignored pixels); 'all_pixels' = mmseg v0.16 (divide by N*H*W).
    """
    up = F.interpolate(logits, size=label.shape[-2:], mode="bilinear",
                       align_corners=False)
    target = label.long()
    if reduction == "valid_pixels":
        return F.cross_entropy(up, target, ignore_index=IGNORE_INDEX,
                               reduction="mean")
    if reduction == "all_pixels":
        per_pixel = F.cross_entropy(up, target, ignore_index=IGNORE_INDEX,
                                    reduction="none")
        return per_pixel.mean()
    raise ValueError(f"seg_loss: unknown reduction '{reduction}'")


def param_multipliers(name, param, head_lr_mult):
    """(lr multiplier, weight-decay multiplier) of one named parameter.

    Conv weights decay; BN weights/biases and conv biases (every 1-D
    parameter in this network) do not. Everything under decode_head gets the
    head learning-rate multiplier (mmcv custom_keys={'head': lr_mult}).
    """
    lr_mult = head_lr_mult if name.startswith("decode_head.") else 1.0
    decay_mult = 1.0 if param.dim() > 1 else 0.0
    return lr_mult, decay_mult


def make_sgd(model, lr, momentum=0.9, weight_decay=5e-4, head_lr_mult=10.0):
    """torch.optim.SGD with one param group per (lr, weight decay) pair."""
    groups = {}
    for name, p in model.named_parameters():
        lr_mult, decay_mult = param_multipliers(name, p, head_lr_mult)
        key = (lr * lr_mult, weight_decay * decay_mult)
        groups.setdefault(key, []).append(p)
    param_groups = [dict(params=ps, lr=g_lr, weight_decay=g_wd)
                    for (g_lr, g_wd), ps in groups.items()]
    return torch.optim.SGD(param_groups, lr=lr, momentum=momentum)


def _parent(model, name):
    return model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model


def init_random_(model, generator):
    """Random (not pretrained) weights that exercise every term of BN.

    Backbone convs: kaiming-normal, fan_out, ReLU gain (std sqrt(2/fan_out)).
    BN: weight ~U(0.5,1.5), bias ~N(0,0.1), running_mean ~N(0,0.1),
    running_var ~U(0.5,1.5). Head convs: weight and bias ~N(0, 0.01).
    The last BN of every residual branch (bn3 / bn2 of a BasicBlock) gets a
    small scale ~U(0.1,0.3), a milder form of zero_init_residual: with unit
    scales a random 50-layer BN network is chaotic (float32 and float64 runs
    of the same step differ by 3e-5 in the logits and ReLU masks flip, giving
    1e-2 gradient differences), which would test rounding luck rather than
    the implementation. With it, float32 agrees with float64 to ~5e-6.
    """
    g = generator
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                w = m.weight
                if name.startswith("decode_head."):
                    w.copy_(torch.randn(w.shape, generator=g) * 0.01)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.01)
                else:
                    fan_out = w.shape[0] * w.shape[2] * w.shape[3]
                    std = math.sqrt(2.0 / fan_out)
                    w.copy_(torch.randn(w.shape, generator=g) * std)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                last = name.endswith(".bn3") or (
                    name.endswith(".bn2") and not hasattr(_parent(model, name), "bn3"))
                if last:
                    m.weight.copy_(torch.rand(c, generator=g) * 0.2 + 0.1)
                else:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)


def conv_forward_macs(model, input_shape):
    """Multiply-accumulates of every Conv2d in one forward of input_shape.

    MACs of a conv = N * Cout * Hout * Wout * (Cin / groups) * kh * kw; the
    bias, BN, ReLU, pooling, resize and loss are not counted (they are
    memory-bound and a few percent of the work), the same convention as the
    C benchmark. Counted with forward hooks on a no-grad run.
    """
    total = [0]

    def hook(mod, inp, out):
        n, cout, ho, wo = out.shape
        kh, kw = mod.kernel_size
        total[0] += n * cout * ho * wo * (mod.in_channels // mod.groups) \
            * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0]
