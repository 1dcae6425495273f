"""A layer's zero halo (`Layer.padding`): derived from the paper shapes and from torch convs,
and not read from DRAM (ZigZag's convention: the unpadded input is what the outer level holds).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from picojoule.arch import load_arch
from picojoule.errors import ShapeError
from picojoule.mapping.model import compulsory_input_elems
from picojoule.workload import builtin, from_model
from picojoule.workload.layer import Layer, touched_halo


@pytest.mark.parametrize(
    ("pad", "size", "k", "stride", "want"),
    [
        (1, 56, 3, 1, (1, 1)),  # 3x3 pad 1: the whole halo is touched
        (1, 56, 3, 2, (1, 0)),  # stride 2 on an even input: the last window stops short
        (3, 224, 7, 2, (3, 2)),  # ResNet conv1
        (0, 227, 11, 4, (0, 0)),  # AlexNet conv1
        (2, 5, 3, 1, (2, 2)),  # more padding than a window needs: still all touched
    ],
)
def test_touched_halo(pad, size, k, stride, want):
    out = (size + 2 * pad - k) // stride + 1
    assert touched_halo(pad, pad, size, out, k, stride) == want
    span = (out - 1) * stride + k  # the rows the loop nest touches = halo + real rows
    assert span == sum(want) + min(size, span - want[0])


def test_layer_validates_padding():
    conv = dict(K=2, C=2, P=4, Q=4, R=3, S=3)
    assert Layer(name="ok", padding=(1, 1, 1, 1), **conv).describe().endswith("pad1")
    for bad in [(1, 1, 1), (-1, 0, 0, 0), (1.0, 1, 1, 1), [1, 1, 1, 1], (3, 3, 0, 0)]:
        with pytest.raises(ShapeError, match="padding"):
            Layer(name="bad", padding=bad, **conv)
    a = Layer(name="a", **conv)
    b = Layer(name="b", padding=(1, 1, 1, 1), **conv)
    assert a.shape_key() != b.shape_key()  # the mapping cache must not share their costs


def test_builtin_shapes_carry_their_halo():
    layers = {lyr.name: lyr for lyr in builtin("resnet18").layers}
    assert layers["conv1"].padding == (3, 2, 3, 2)
    assert layers["layer1.0.conv1"].padding == (1, 1, 1, 1)
    assert layers["layer2.0.conv1"].padding == (1, 0, 1, 0)
    assert layers["layer2.0.downsample"].padding == (0, 0, 0, 0)
    assert builtin("alexnet").layers[0].padding == (0, 0, 0, 0)


def test_from_model_reads_the_halo_of_modules_and_functional_convs():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1)
            self.c = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
            self.d = nn.Conv1d(4, 4, 5, padding=2)
            self.w = nn.Parameter(torch.randn(4, 4, 3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.c(self.b(self.a(x)))
            x = F.conv2d(x, self.w, padding="same")
            return self.d(x.flatten(2))

    layers = from_model(Net(), torch.randn(1, 3, 16, 16)).layers
    assert [lyr.padding for lyr in layers] == [
        (1, 1, 1, 1),
        (1, 0, 1, 0),
        (0, 0, 0, 0),  # reflect padding copies real input: no generated halo
        (1, 1, 1, 1),
        (0, 0, 2, 2),  # Conv1d: the width axis only
    ]


def test_dram_holds_the_unpadded_input():
    arch = load_arch("eyeriss")
    layer = {lyr.name: lyr for lyr in builtin("resnet18").layers}["layer1.0.conv1"]
    real = 64 * 56 * 56
    assert compulsory_input_elems(layer, arch) == pytest.approx(real)
    touched = 64 * 58 * 58  # what a layer without its halo reads: 7.3% more
    assert layer.input_elems == touched
    reads_all = arch.model_copy(update={"padding_reads": True})
    assert compulsory_input_elems(layer, reads_all) == touched
