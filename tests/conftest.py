"""Test-session settings: a private model cache so tests never touch the user's."""

from __future__ import annotations

import os
import tempfile

import torch

os.environ.setdefault("PICOJOULE_CACHE", os.path.join(tempfile.gettempdir(), "picojoule-tests"))
# rich wraps tables to the terminal; captured output has none, so fix a wide one for CLI tests.
os.environ["COLUMNS"] = "200"
torch.set_num_threads(1)  # pytest -n 2 already uses both cores
