"""Shape-only definitions of well-known networks, written out here (no torchvision).

Public: `builtin(name, batch=1)`, `BUILTINS`.

Shapes follow the original papers; each builder cites its source. Padding sets the output
sizes (P, Q) and each conv's `padding` (the zero halo its windows touch), which the cost model
generates on chip rather than reading from DRAM.
"""

from __future__ import annotations

from collections.abc import Callable

from picojoule.errors import ConfigError, did_you_mean
from picojoule.workload.layer import Layer, Workload, touched_halo

__all__ = ["BUILTINS", "builtin"]


def _conv(
    name: str,
    n: int,
    c: int,
    k: int,
    size: int,
    r: int,
    stride: int = 1,
    g: int = 1,
    pad: int | None = None,
) -> tuple[Layer, int]:
    """A square conv on a `size`x`size` input; returns the layer and its output size."""
    pad = r // 2 if pad is None else pad
    out = (size + 2 * pad - r) // stride + 1
    kind = "depthwise" if g > 1 and g == c else "conv"
    halo = touched_halo(pad, pad, size, out, r, stride)
    layer = Layer(
        name=name,
        kind=kind,
        N=n,
        G=g,
        K=k // g,
        C=c // g,
        P=out,
        Q=out,
        R=r,
        S=r,
        stride_h=stride,
        stride_w=stride,
        padding=(*halo, *halo),
    )
    return layer, out


def _fc(name: str, n: int, c: int, k: int, repeat: int = 1) -> Layer:
    return Layer(name=name, kind="linear", N=n, K=k, C=c, repeat=repeat)


def alexnet(n: int) -> list[Layer]:
    """AlexNet as in Krizhevsky et al., NIPS 2012, with its two-group CONV2/4/5, as tabulated
    in Chen et al., "Eyeriss", ISCA 2016, Table 1 (CONV1 227x227 input, 11x11 stride 4)."""
    conv1, s = _conv("conv1", n, 3, 96, 227, 11, stride=4, pad=0)  # 55x55
    s = (s - 3) // 2 + 1  # maxpool 3x3/2 -> 27
    conv2, s = _conv("conv2", n, 96, 256, s, 5, g=2)  # 27x27
    s = (s - 3) // 2 + 1  # -> 13
    conv3, s = _conv("conv3", n, 256, 384, s, 3)
    conv4, s = _conv("conv4", n, 384, 384, s, 3, g=2)
    conv5, s = _conv("conv5", n, 384, 256, s, 3, g=2)
    return [
        conv1,
        conv2,
        conv3,
        conv4,
        conv5,
        _fc("fc6", n, 9216, 4096),
        _fc("fc7", n, 4096, 4096),
        _fc("fc8", n, 4096, 1000),
    ]


def vgg16(n: int) -> list[Layer]:
    """VGG-16 (configuration D), Simonyan & Zisserman, ICLR 2015, Table 1."""
    plan = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layers, c, s, i = [], 3, 224, 0
    for item in plan:
        if item == "M":
            s //= 2
            continue
        i += 1
        layer, s = _conv(f"conv{i}", n, c, int(item), s, 3)
        layers.append(layer)
        c = int(item)
    return [
        *layers,
        _fc("fc6", n, 512 * 7 * 7, 4096),
        _fc("fc7", n, 4096, 4096),
        _fc("fc8", n, 4096, 1000),
    ]


def _resnet_stem(n: int) -> tuple[Layer, int]:
    conv1, s = _conv("conv1", n, 3, 64, 224, 7, stride=2)  # 112x112
    return conv1, (s + 2 - 3) // 2 + 1  # maxpool 3x3/2 pad 1 -> 56


def resnet18(n: int) -> list[Layer]:
    """ResNet-18, He et al., CVPR 2016, Table 1 (basic blocks, 1x1 projection shortcuts)."""
    conv1, s = _resnet_stem(n)
    layers, c = [conv1], 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            tag = f"layer{stage}.{block}"
            a, out = _conv(f"{tag}.conv1", n, c, width, s, 3, stride=stride)
            b, _ = _conv(f"{tag}.conv2", n, width, width, out, 3)
            layers += [a, b]
            if stride != 1 or c != width:
                layers.append(_conv(f"{tag}.downsample", n, c, width, s, 1, stride=stride)[0])
            c, s = width, out
    return [*layers, _fc("fc", n, 512, 1000)]


def resnet50(n: int) -> list[Layer]:
    """ResNet-50, He et al., CVPR 2016, Table 1; stride on the 3x3 conv (the common "v1.5")."""
    conv1, s = _resnet_stem(n)
    layers, c = [conv1], 64
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
        for block in range(blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            tag = f"layer{stage}.{block}"
            a, _ = _conv(f"{tag}.conv1", n, c, width, s, 1)
            b, out = _conv(f"{tag}.conv2", n, width, width, s, 3, stride=stride)
            d, _ = _conv(f"{tag}.conv3", n, width, 4 * width, out, 1)
            layers += [a, b, d]
            if block == 0:
                layers.append(_conv(f"{tag}.downsample", n, c, 4 * width, s, 1, stride=stride)[0])
            c, s = 4 * width, out
    return [*layers, _fc("fc", n, 2048, 1000)]


def mobilenetv2(n: int) -> list[Layer]:
    """MobileNetV2, Sandler et al., CVPR 2018, Table 2 (width 1.0, 224x224)."""
    layer, s = _conv("features.0", n, 3, 32, 224, 3, stride=2)
    layers, c, idx = [layer], 32, 1
    for t, width, repeats, first_stride in (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ):
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            hidden = c * t
            tag = f"features.{idx}"
            if t != 1:
                layers.append(_conv(f"{tag}.expand", n, c, hidden, s, 1)[0])
            dw, out = _conv(f"{tag}.depthwise", n, hidden, hidden, s, 3, stride=stride, g=hidden)
            layers += [dw, _conv(f"{tag}.project", n, hidden, width, out, 1)[0]]
            c, s, idx = width, out, idx + 1
    layers.append(_conv(f"features.{idx}", n, c, 1280, s, 1)[0])
    return [*layers, _fc("classifier", n, 1280, 1000)]


def bert_base(n: int, seq: int = 128) -> list[Layer]:
    """BERT-base encoder, Devlin et al., NAACL 2019: 12 layers, hidden 768, 12 heads of 64,
    FFN 3072; sequence length 128. Token rows go in N; attention runs per head (G=12)."""
    tokens, hidden, heads, d_head, ffn, depth = n * seq, 768, 12, 64, 3072, 12
    return [
        _fc("encoder.qkv", tokens, hidden, 3 * hidden, repeat=depth),
        Layer(
            name="encoder.attn.qk", kind="matmul", N=seq, G=n * heads, K=seq, C=d_head, repeat=depth
        ),
        Layer(
            name="encoder.attn.av", kind="matmul", N=seq, G=n * heads, K=d_head, C=seq, repeat=depth
        ),
        _fc("encoder.attn.out", tokens, hidden, hidden, repeat=depth),
        _fc("encoder.ffn1", tokens, hidden, ffn, repeat=depth),
        _fc("encoder.ffn2", tokens, ffn, hidden, repeat=depth),
    ]


def digits_cnn(n: int) -> list[Layer]:
    """The project's default model (picojoule.models.digits): 8x8 digits, three 3x3 convs."""
    conv1, s = _conv("conv1", n, 1, 16, 8, 3)
    conv2, s = _conv("conv2", n, 16, 32, s, 3)
    conv3, s = _conv("conv3", n, 32, 64, s // 2, 3)
    return [conv1, conv2, conv3, _fc("fc1", n, 256, 64), _fc("fc2", n, 64, 10)]


BUILTINS: dict[str, Callable[[int], list[Layer]]] = {
    "alexnet": alexnet,
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenetv2": mobilenetv2,
    "bert-base": bert_base,
    "digits-cnn": digits_cnn,
}


def builtin(name: str, *, batch: int = 1) -> Workload:
    """A built-in network's layers at batch size `batch` (int8 operands by default)."""
    key = name.lower().replace("_", "-")
    if key not in BUILTINS:
        raise ConfigError(
            f"unknown built-in workload {name!r}; choose one of {', '.join(BUILTINS)}"
            f"{did_you_mean(key, BUILTINS)}"
        )
    if batch < 1:
        raise ConfigError(f"batch={batch} must be a positive integer")
    return Workload(name=key, layers=tuple(BUILTINS[key](batch)))
