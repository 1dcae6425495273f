"""picojoule: what each hardware-efficiency lever costs in accuracy and buys in energy, area
and speed, on your own model."""

from picojoule.errors import ConfigError, FormatError, PicojouleError, ShapeError

__version__ = "0.1.0"
__all__ = ["PicojouleError", "FormatError", "ConfigError", "ShapeError", "__version__"]
