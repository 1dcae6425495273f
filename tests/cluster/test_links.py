"""Links, node presets and the tiers a group sees: every figure cited, the spec arithmetic exact,
user overrides strict."""

from __future__ import annotations

from pathlib import Path

import pytest

from picojoule.cluster.links import SIGNALING, link, links
from picojoule.cluster.topology import node, nodes, system
from picojoule.errors import ConfigError


def test_every_row_is_cited_and_sourced() -> None:
    for row in [*links().values(), *nodes().values()]:
        assert row.citation.strip(), row.name
        assert row.source in ("primary", "secondary", "assumption"), row.name


@pytest.mark.parametrize(("name", "gts"), [("pcie3-x16", 8), ("pcie4-x16", 16), ("pcie5-x16", 32)])
def test_pcie_x16_is_lane_rate_times_encoding(name: str, gts: int) -> None:
    """PCI-SIG: GT/s per lane x 16 lanes x 128b/130b / 8 bits = 15.75 / 31.5 / 63 GB/s."""
    assert link(name).bandwidth_gbs == pytest.approx(gts * 16 * 128 / 130 / 8, rel=2e-3)


@pytest.mark.parametrize(
    ("name", "bidirectional", "source"),
    [("nvlink1", 160, "primary"), ("nvlink2", 300, "primary"), ("nvlink3", 600, "primary"),
     ("nvlink4", 900, "primary"), ("nvlink5", 1800, "secondary")],
)  # fmt: skip
def test_nvlink_generations_double(name: str, bidirectional: float, source: str) -> None:
    """P100 160, V100 300, A100 600, H100 900, B200 1800 GB/s bidirectional per GPU; the table
    stores one direction. B200's figure comes from product pages, not a whitepaper table."""
    lk = link(name)
    assert 2 * lk.bandwidth_gbs == bidirectional
    assert lk.source == source
    assert lk.kind == "nvlink"


def test_infiniband_per_nic() -> None:
    assert link("ib-hdr").bandwidth_gbs == 25 and link("ib-ndr").bandwidth_gbs == 50
    assert link("ib-ndr").kind == "net" and link("ib-ndr").latency_us > link("nvlink4").latency_us


def test_signaling_reference_figures() -> None:
    """NVIDIA Research GRS links: 170 fJ/bit/mm on chip, 0.54 pJ/bit across an organic
    package, 1.17 pJ/bit over a board."""
    got = {s.what: s.pj_per_bit for s in SIGNALING}
    assert got == {"on-chip wire": 0.17, "across an organic package": 0.54,
                   "over a printed-circuit board": 1.17}  # fmt: skip
    assert link("nvlink4").energy_pj_per_bit == 1.17


def test_node_presets() -> None:
    a100, h100, nvl = node("dgx-a100"), node("dgx-h100"), node("nvl72")
    assert (a100.gpu, a100.gpus_per_node, a100.nics_per_node, a100.scale_out) == (
        "a100", 8, 8, "ib-hdr")  # fmt: skip
    assert not a100.nvls and h100.nvls and h100.nvls_efficiency == 0.85
    assert (h100.scale_up, h100.scale_out, h100.nics_per_node) == ("nvlink4", "ib-ndr", 8)
    assert nvl.gpus_per_node == 72 and nvl.gpu == "b200" and nvl.nvls


def test_system_applies_the_nodes_gpu_variant() -> None:
    """DGX A100 640GB carries A100 80GB (2039 GB/s); the GPU table's a100 is the 40GB part.
    Naming another GPU drops the node's variant overrides."""
    s = system("dgx-a100")
    assert s.gpu.memory_gb == 80 and s.gpu.bandwidth_gbs == 2039
    assert system("dgx-h100", gpu="h200").gpu.memory_gb == 141


def test_tiers_bandwidth_share_and_energy() -> None:
    s = system("dgx-h100")
    intra = s.intra_tier()
    assert intra.bandwidth_bytes_per_s == pytest.approx(450e9 * 0.8)
    assert intra.energy_pj_per_bit == pytest.approx(2 * 1.17 + 4.25)  # 2 hops + switch
    assert intra.nvls_efficiency == 0.85
    assert s.inter_tier().bandwidth_bytes_per_s == pytest.approx(50e9 * 0.94)  # 8 NICs, 8 GPUs
    dgx1 = system("dgx-1-v100")  # 4 EDR NICs shared by 8 GPUs talking at once
    assert dgx1.inter_tier().bandwidth_bytes_per_s == pytest.approx(12.5e9 * 0.94 / 2)
    assert dgx1.inter_tier(concurrent=1).bandwidth_bytes_per_s == pytest.approx(12.5e9 * 0.94)
    g = s.group(8, 4)
    assert g.n == 32 and g.intra is not None and g.inter is not None
    assert s.group(1, 2).intra is None and s.group(8, 1).inter is None
    with pytest.raises(ConfigError, match="has 8 GPUs"):
        s.group(16, 1)
    assert s.wait_power_w == pytest.approx(700 * 0.49)


def test_override_file_replaces_and_adds_rows(tmp_path: Path) -> None:
    f = tmp_path / "hw.yaml"
    f.write_text(
        "links:\n"
        "  - {name: ib-ndr, title: NDR measured, kind: net, bandwidth_gbs: 50, latency_us: 9,\n"
        "     efficiency: 0.9, energy_pj_per_bit: 30, source: assumption, citation: our lab}\n"
        "  - {name: ib-xdr, title: XDR 800G, kind: net, bandwidth_gbs: 100, latency_us: 14,\n"
        "     efficiency: 0.94, energy_pj_per_bit: 40, source: assumption, citation: roadmap}\n"
        "nodes:\n"
        "  - {name: my-node, title: mine, gpu: h100, gpus_per_node: 4, scale_up: nvlink4,\n"
        "     scale_out: ib-xdr, nics_per_node: 4, source: assumption, citation: ours}\n"
    )
    assert link("ib-ndr", f).efficiency == 0.9 and link("ib-ndr").efficiency == 0.94
    s = system("my-node", override=f)
    assert s.scale_out.name == "ib-xdr" and s.gpus_per_node == 4
    assert "dgx-h100" in nodes(f)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("links:\n  - {name: a}\n  - {name: a}\n", "row 1 .a.: title"),
        ("links: []\nlinks: []\n", "duplicate|twice|given"),
        ("switches: []\n", "unknown section 'switches'"),
        ("links:\n  - {name: x, title: x, kind: nvlink, bandwidth_gbs: -1, latency_us: 1,"
         " efficiency: 1, energy_pj_per_bit: 1, source: primary, citation: c}\n",
         "bandwidth_gbs"),
        ("links:\n  - {name: x, title: x, kind: wifi, bandwidth_gbs: 1, latency_us: 1,"
         " efficiency: 1, energy_pj_per_bit: 1, source: primary, citation: c}\n", "kind"),
        ("nodes:\n  - {name: n, title: n, gpu: h100, gpus_per_node: 8, scale_up: nvlink4,"
         " scale_out: ib-ndr, nics_per_node: 8, nvls: true, source: primary, citation: c}\n",
         "nvls_efficiency"),
    ],
)  # fmt: skip
def test_bad_override_is_one_line(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        links(f)
        nodes(f)
    assert "\n" not in str(err.value)


def test_unknown_names_suggest() -> None:
    with pytest.raises(ConfigError, match="did you mean: nvlink4"):
        link("nvlink44")
    with pytest.raises(ConfigError, match="dgx-h100"):
        node("dgx-h10")
    with pytest.raises(ConfigError, match="unknown GPU"):
        system("dgx-h100", gpu="h1000")
