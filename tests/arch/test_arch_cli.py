"""`picojoule arch list|show [--yaml]`: the presets, one in detail, and YAML that loads back as
the same spec; bad names are one `error:` line."""

from __future__ import annotations

import sys

import pytest

from picojoule import cli
from picojoule.arch import load_arch, presets


def _arch(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["picojoule", "arch", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out + cap.err


def test_list_names_every_preset_and_the_gpu_targets(monkeypatch, capsys):
    code, out = _arch(monkeypatch, capsys, "list")
    assert code == 0, out
    rows = [ln for ln in out.splitlines() if ln.startswith("│ ") and not ln.startswith("│  ")]
    assert [ln.split("│")[1].strip() for ln in rows] == list(presets.PRESETS)
    assert "│       168 │" in rows[0]  # eyeriss: 12 x 14 PEs
    assert "h100" in out and "a100" in out  # costed by roofline: named, not listed as specs


def test_show_describes_levels_array_and_mac(monkeypatch, capsys):
    code, out = _arch(monkeypatch, capsys, "show", "eyeriss")
    assert code == 0, out
    assert "168 MAC lanes at 0.2 GHz, 65 nm; MAC: int16, 16-bit accumulators" in out
    assert "sparsity: zero inputs gated" in out
    glb = next(ln for ln in out.splitlines() if ln.startswith("│ GlobalBuffer"))
    assert "108 KiB" in glb and "14x12" in glb
    rf = next(ln for ln in out.splitlines() if ln.startswith("│ RegisterFile"))
    assert "W 448 B, I 24 B, O 48 B" in rf  # 224 / 12 / 24 16-bit words


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_yaml_loads_back_as_the_same_spec(monkeypatch, capsys, tmp_path, name):
    code, out = _arch(monkeypatch, capsys, "show", name, "--yaml")
    assert code == 0, out
    assert out.startswith("# picojoule accelerator spec, from ")
    path = tmp_path / "mine.yaml"
    path.write_text(out)
    assert load_arch(path) == presets.preset(name)


def test_an_edited_yaml_is_a_starting_point(monkeypatch, capsys, tmp_path):
    _, text = _arch(monkeypatch, capsys, "show", "eyeriss", "--yaml")
    mine = tmp_path / "mine.yaml"
    mine.write_text(text.replace("clock_ghz: 0.2", "clock_ghz: 0.5").replace(
        "name: eyeriss\n", "name: my-eyeriss\n", 1))  # fmt: skip
    code, out = _arch(monkeypatch, capsys, "show", str(mine))
    assert code == 0, out
    assert out.startswith("my-eyeriss:") and "168 MAC lanes at 0.5 GHz" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("show", "eyris"), "unknown accelerator preset 'eyris' (did you mean: eyeriss"),
        (("show", "h100"), "'h100' is a GPU: picojoule costs it by its roofline"),
        (("show", "mine.yaml"), "mine.yaml: no such file; give the path of an accelerator YAML"),
        (("show", ""), "arch name is empty"),
        (("show", "{tmp}"), "is a directory; give a YAML file"),
        (("show", "{tmp}/bad.yaml"), "levels.0.holds.0: Input should be 'weights'"),
    ],
)
def test_bad_names_are_one_line(monkeypatch, capsys, tmp_path, args, fragment):
    (tmp_path / "bad.yaml").write_text("name: x\nlevels:\n- {name: DRAM, holds: [weight]}\n")
    args = tuple(a.replace("{tmp}", str(tmp_path)) for a in args)
    code, out = _arch(monkeypatch, capsys, *args)
    flat = " ".join(out.split())
    assert code == 2, out
    assert "Traceback" not in out and flat.count("error:") == 1
    assert fragment in flat, flat
