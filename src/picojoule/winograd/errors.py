"""The one error type of `picojoule.winograd`."""

from __future__ import annotations

from picojoule.errors import PicojouleError

__all__ = ["WinogradError"]


class WinogradError(PicojouleError, ValueError):
    """A Winograd transform or convolution that cannot be built or run as asked.

    Raised for singular point sets (a repeated interpolation point), tiles or kernels that are
    not positive integers, strided or dilated convolutions, and kernels larger than their
    (padded) input. The message names the problem and the fix.
    """
