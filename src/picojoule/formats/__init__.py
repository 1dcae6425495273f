"""Number formats: element formats as data, scaled formats composed from them, one registry.

Public: `get(name)`, `names()`, `FloatFormat`, `IntFormat`, `LNSFormat`, `CodebookFormat`,
`ScaledFormat`, granularities `PerTensor`, `PerChannel`, `PerBlock`, and `FormatError`.
Importable with torch + numpy alone (the GPU machine has no pydantic).
"""

from picojoule.errors import FormatError
from picojoule.formats.registry import ElementFormat, Format, get, names
from picojoule.formats.scaled import PerBlock, PerChannel, PerTensor, ScaledFormat
from picojoule.formats.spec import CodebookFormat, FloatFormat, IntFormat, LNSFormat

__all__ = [
    "get",
    "names",
    "Format",
    "ElementFormat",
    "FloatFormat",
    "IntFormat",
    "LNSFormat",
    "CodebookFormat",
    "ScaledFormat",
    "PerTensor",
    "PerChannel",
    "PerBlock",
    "FormatError",
]
