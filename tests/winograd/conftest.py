"""One intra-op thread for this package's tests.

The tensors here are small (kilobytes to a few megabytes), so extra threads buy nothing, and on
a shared 2-core CI runner with pytest-xdist workers, OpenMP threads waiting on busy cores made
the same tests up to 50x slower (measured while writing them).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
