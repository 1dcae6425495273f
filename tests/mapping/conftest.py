"""Make the shared case generator (`randcase.py`) importable under any pytest import mode."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
