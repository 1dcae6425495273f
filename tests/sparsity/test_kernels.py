import pytest
import torch

from picojoule.errors import FormatError
from picojoule.sparsity import is_nm, nm_mask, semi_structured_verdict


def test_qualifying_linear() -> None:
    v = semi_structured_verdict("linear", (64, 256), "fp16", "2:4")
    assert v.qualifies and v.kernel == "cuSPARSELt 2:4 (float16)" and v.why_not == ""
    v = semi_structured_verdict("linear", (64, 256), torch.int8, "2:4")
    assert v.qualifies and v.kernel == "cuSPARSELt 2:4 (int8)"


@pytest.mark.parametrize(
    ("kind", "shape", "dtype", "pattern", "fragments"),
    [
        ("linear", (10, 64), "fp16", "2:4", ["out features 10 not a multiple of 16"]),
        ("linear", (64, 40), "bf16", "2:4", ["in features 40 not a multiple of 16"]),
        ("linear", (16, 256), "int8", "2:4", ["out features 16 not a multiple of 32"]),
        ("linear", (64, 256), "fp32", "2:4", ["dtype float32 not served by cuSPARSELt"]),
        ("linear", (64, 256), "fp16", "1:4", ["pattern 1:4 is not 2:4"]),
        ("linear", (64, 256), "fp16", "dense", ["not sparsified"]),
        ("conv2d", (32, 16, 3, 3), "fp16", "2:4", ["no conv kernel"]),
    ],
)
def test_rules_name_every_failure(kind, shape, dtype, pattern, fragments) -> None:
    v = semi_structured_verdict(kind, shape, dtype, pattern)
    assert not v.qualifies
    assert v.kernel == ("dense cuBLAS" if kind == "linear" else "dense cuDNN")
    for fragment in fragments:
        assert fragment in v.why_not


def test_cutlass_limits_differ() -> None:
    assert not semi_structured_verdict(
        "linear", (32, 32), "fp16", "2:4", backend="cutlass"
    ).qualifies
    v = semi_structured_verdict("linear", (32, 64), "fp32", "2:4", backend="cutlass")
    assert v.qualifies and v.kernel == "CUTLASS 2:4 (float32)"
    with pytest.raises(FormatError, match="unknown backend"):
        semi_structured_verdict("linear", (32, 64), "fp16", "2:4", backend="triton")


def test_broken_mask_is_reported() -> None:
    v = semi_structured_verdict("linear", (64, 256), "fp16", "2:4", mask_is_2to4=False)
    assert "breaks 2:4" in v.why_not


def test_is_nm() -> None:
    w = torch.randn(8, 16)
    assert not is_nm(w)
    assert is_nm(w * nm_mask(w, 2, 4))
    assert is_nm(w * nm_mask(w, 1, 4), 2, 4)  # sparser still fits
    assert not is_nm(torch.zeros(8, 6))  # groups do not divide
