"""Cache keys follow the code: the digest changes when a file of the package changes."""

from __future__ import annotations

import sys

from picojoule.versioning import code_digest


def test_digest_tracks_file_contents(tmp_path, monkeypatch):
    pkg = tmp_path / "pj_probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = code_digest(("pj_probe_pkg",))
    assert len(first) == 12 and first == code_digest(("pj_probe_pkg",))
    (pkg / "model.py").write_text("A = 2\n")
    code_digest.cache_clear()
    assert code_digest(("pj_probe_pkg",)) != first
    sys.modules.pop("pj_probe_pkg", None)


def test_missing_packages_are_ignored():
    assert code_digest(("picojoule_no_such_pkg",)) == code_digest(())


def test_a_module_hashes_only_its_own_file(tmp_path, monkeypatch):
    pkg = tmp_path / "pj_probe_mod"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("A = 1\n")
    (pkg / "b.py").write_text("B = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code_digest.cache_clear()
    first = code_digest(("pj_probe_mod.a",))
    (pkg / "b.py").write_text("B = 2\n")
    code_digest.cache_clear()
    assert code_digest(("pj_probe_mod.a",)) == first
    (pkg / "a.py").write_text("A = 2\n")
    code_digest.cache_clear()
    assert code_digest(("pj_probe_mod.a",)) != first
    for m in ("pj_probe_mod", "pj_probe_mod.a"):
        sys.modules.pop(m, None)
