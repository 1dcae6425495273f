"""The strict YAML loader: data only, no duplicate keys, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from picojoule.errors import ConfigError
from picojoule.yamlio import load_yaml, load_yaml_file


def test_plain_data_and_merge_keys_load() -> None:
    doc = "a: 1\nb: [1, 2]\nbase: &x {k: 1, j: 2}\nd: {<<: *x, k: 3}\n"
    assert load_yaml(doc) == {"a": 1, "b": [1, 2], "base": {"k": 1, "j": 2}, "d": {"k": 3, "j": 2}}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("a: 1\na: 2\n", r"f.yaml: line 2: key 'a' is given twice \(first on line 1\)"),
        ("x:\n  y: 1\n  z: 2\n  y: 3\n", r"line 4: key 'y' is given twice"),
        ("parameters: {a: [1]}\nparameters: {b: [2]}\n", "key 'parameters' is given twice"),
        ("- {n: 1, n: 2}\n", "key 'n' is given twice"),
        ("1: a\n1: b\n", "key 1 is given twice"),
        ("a: [\n", r"f.yaml: line \d+: not valid YAML"),
        ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
        ("? [1, 2]\n: v\n", "a mapping key must be a plain value"),
        ("a: *nope\n", "not valid YAML"),
    ],
)
def test_bad_documents_are_one_config_error(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        load_yaml(doc, "f.yaml")
    assert "\n" not in str(e.value)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(ConfigError):
        load_yaml("[" * 100_000 + "]" * 100_000)


def test_files(tmp_path: Path) -> None:
    good = tmp_path / "a.yaml"
    good.write_text("k: v\n")
    assert load_yaml_file(good) == {"k": "v"}
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00k")
    for path, message in [
        (tmp_path / "missing.yaml", "no such file"),
        (tmp_path, "is a directory"),
        (binary, "not UTF-8"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_yaml_file(path)
