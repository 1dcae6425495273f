"""Default figures shared by the energy models and `picojoule explain` (no heavy imports).

They sit apart from the models so that the CLI can show them as option defaults without
loading the tables (pydantic, numpy) at start-up.
"""

from __future__ import annotations

__all__ = ["DEFAULT_REDUCTION", "OVERHEAD_PJ"]

# Dally, Hardware for Deep Learning, Hot Chips 35 keynote 2023 ("complex instructions": 30 pJ of
# instruction fetch, decode and operand fetch at 45 nm); the seed brief's "~30 pJ".
OVERHEAD_PJ = 30.0
DEFAULT_REDUCTION = 4096  # dot-product length K when none is given (C*R*S or in_features)
