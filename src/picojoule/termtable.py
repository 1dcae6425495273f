"""Terminal tables that read at any width: `FitTable`.

One concept: a `FitTable` is a rich `Table` that lays itself out for the width of the console
it is printed on, and never cuts a cell with "…".

* All columns fit: one table. A name column (`kind="name"`: layers, recipes, GPUs) wraps at
  spaces and keeps each word whole up to `NAME_MAX` cells; a number column
  (`kind="number"`) is as wide as its widest cell, so a number is never broken; a text column
  (`kind="text"`) wraps at spaces and folds words longer than `WORD_MAX`.
* They do not: the table is printed as a few tables, each as wide as the console allows, with
  the key column (the first `key_columns`, the name) repeated in each; the next ones are
  titled "(continued)" and the caption closes the last. Columns are packed by `rank` (0 first:
  kept with the key in the first table), widest first within a rank, into as few tables as
  fit; each table shows its columns in their order.
* Not even the key and one more column fit (a very narrow terminal): each row becomes a
  vertical "header  value" list under its key.

`FitTable` keeps `Table`'s API (`columns`, `rows`, `add_row`, `caption`), so code and tests
that read a table's columns keep working; `add_column` takes `kind` and `rank` on top.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

__all__ = ["FitTable", "Kind", "NAME_MAX", "WORD_MAX", "TEXT_COMFORT"]

Kind = Literal["name", "number", "text"]
NAME_MAX = 40  # a name's word (a module path) is folded only past this many cells
WORD_MAX = 24  # a text column's word is folded past this many cells
TEXT_COMFORT = 24  # a text column wraps at spaces past this width only when space is short
_UNBOUNDED = 10_000  # measuring width: wide enough that nothing is clamped


class FitTable(Table):
    """A rich `Table` that fits the console's width: continuation tables instead of "…".

    key_columns: how many leading columns name a row (repeated in every continuation table).
    """

    def __init__(self, *args: Any, key_columns: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_columns = key_columns
        self.fit_kinds: list[tuple[Kind, int]] = []

    def add_column(
        self,
        header: RenderableType = "",
        footer: RenderableType = "",
        *,
        kind: Kind | None = None,
        rank: int = 0,
        **kwargs: Any,
    ) -> None:
        """`Table.add_column` plus `kind` (default: "number" when right-justified, else
        "name" for the first column and "text" for the others) and `rank` (0: kept with the
        key first when the columns do not all fit). Cells fold, never end in "…"."""
        if kind is None:
            right = kwargs.get("justify") == "right"
            kind = "number" if right else ("name" if not self.columns else "text")
        kwargs.update(overflow="fold", no_wrap=False, max_width=None)
        super().add_column(header, footer, **kwargs)
        self.fit_kinds.append((kind, rank))

    # --- layout ----------------------------------------------------------------------------

    def _spans(self, console: Console, options: ConsoleOptions) -> list[tuple[int, int]]:
        """(least, natural) content width of each column: the least keeps numbers and words
        whole as the column's kind asks; the natural is its widest line."""
        wide = options.update_width(_UNBOUNDED)
        spans = []
        for column, (kind, _) in zip(self.columns, self.fit_kinds, strict=True):
            head = Measurement.get(console, wide, column.header)
            cells = [Measurement.get(console, wide, c) for c in column._cells]
            natural = max([head.maximum, *(m.maximum for m in cells)])
            word = max([head.minimum, *(m.minimum for m in cells)])
            if kind == "number":
                least = max([head.minimum, *(m.maximum for m in cells)])
            elif kind == "name":
                least = min(word, NAME_MAX)
            else:
                least = min(word, WORD_MAX)
            spans.append((max(1, least), max(1, natural, least)))
        return spans

    def _comfortable(self, spans: Sequence[tuple[int, int]]) -> list[int]:
        """Width each column asks for when tables are packed: whole names (up to NAME_MAX),
        text up to TEXT_COMFORT before it wraps, numbers as wide as they are."""
        out = []
        for (kind, _), (least, natural) in zip(self.fit_kinds, spans, strict=True):
            cap = {"name": NAME_MAX, "text": TEXT_COMFORT}.get(kind, natural)
            out.append(max(least, min(natural, cap)))
        return out

    def _width_of(self, widths: Sequence[int]) -> int:
        """Width of a table of columns of these content widths: padding and borders added."""
        _, right, _, left = self.padding
        borders = (len(widths) + 1 if self.show_edge else len(widths) - 1) if self.box else 0
        return sum(widths) + len(widths) * (left + right) + borders

    def _groups(
        self, least: Sequence[int], width: int, *, widest_first: bool = False
    ) -> list[list[int]] | None:
        """Column indices of each table to print (the key's in every one), in their order,
        packed at the widths `least` by rank, in column order or widest first within a rank
        (first fit decreasing: fewer tables, columns further from their neighbours); None
        when the key and one more column do not fit."""
        n = len(self.columns)
        keys = list(range(min(self.key_columns, n)))

        def order(i: int) -> tuple[int, int, int]:
            return self.fit_kinds[i][1], -least[i] if widest_first else 0, i

        rest = sorted(range(len(keys), n), key=order)

        def fits(cols: Iterable[int]) -> bool:
            return self._width_of([least[j] for j in (*keys, *cols)]) <= width

        groups: list[list[int]] = []
        for i in rest:  # first fit: a narrow column fills the room wide ones left
            room = next((g for g in groups if fits((*g, i))), None)
            if room is not None:
                room.append(i)
            elif fits((i,)):
                groups.append([i])
            else:
                return None
        if not groups:
            if not fits(()):
                return None
            groups.append([])
        return [sorted([*keys, *g]) for g in groups]

    def _widths(
        self,
        cols: Sequence[int],
        spans: Sequence[tuple[int, int]],
        packed: Sequence[int],
        width: int,
    ) -> list[int]:
        """Content widths for `cols`: natural when they fit, else the widths they were packed
        at plus the room left: to the key, then to the columns closest to their natural."""
        natural = [spans[i][1] for i in cols]
        if self._width_of(natural) <= width:
            return natural
        widths = [packed[i] for i in cols]
        room = width - self._width_of(widths)
        keys = min(self.key_columns, len(self.columns))
        # the key's names whole first, then the columns closest to whole: fewest wrapped cells
        for k in sorted(range(len(cols)), key=lambda k: (cols[k] >= keys, natural[k] - widths[k])):
            grow = min(room, natural[k] - widths[k])
            if grow > 0:
                widths[k] += grow
                room -= grow
        return widths

    def _table(
        self, cols: Sequence[int], widths: Sequence[int], *, first: bool, last: bool
    ) -> Table:
        """A plain `Table` of the columns `cols` (the rows, styles and box of this one)."""
        out = Table.__new__(Table)
        out.__dict__.update(self.__dict__)
        out.columns = []
        for pos, (i, w) in enumerate(zip(cols, widths, strict=True)):
            column: Column = copy.copy(self.columns[i])
            column._index, column.width, column.min_width = pos, w, None
            out.columns.append(column)
        if not first:
            out.title = _continued(self.title)
        if not last:
            out.caption = None
        return out

    def _vertical(self) -> Iterable[RenderableType]:
        """Each row as its key, then one "header  value" line per other column."""
        if self.title:
            yield _text(self.title, "table.title")
        keys = range(min(self.key_columns, len(self.columns)))
        for r in range(self.row_count):
            key = Text(" ").join(_text(self.columns[k]._cells[r], "bold") for k in keys)
            yield key
            grid = Table.grid(padding=(0, 1), pad_edge=True)
            grid.add_column(style="table.header", overflow="fold")
            grid.add_column(overflow="fold")
            for column in self.columns[len(keys) :]:
                grid.add_row(column.header, column._cells[r])
            yield grid
        if self.caption:
            yield _text(self.caption, "table.caption")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.columns or self.width is not None:
            yield from super().__rich_console__(console, options)
            return
        width = options.max_width
        spans = self._spans(console, options)
        # Packed at comfortable widths (whole names, short text lines), at the least widths
        # with the key kept whole, or at the least widths; in column order, else widest
        # first: the fewest tables wins, the earlier try on a tie (the room left in a table
        # widens its columns again).
        comfortable, least = self._comfortable(spans), [s[0] for s in spans]
        keys = min(self.key_columns, len(spans))
        tries = [
            (w, widest)
            for widest in (False, True)
            for w in (comfortable, [*comfortable[:keys], *least[keys:]], least)
        ]
        packed = [
            (g, w) for w, widest in tries if (g := self._groups(w, width, widest_first=widest))
        ]
        if not packed:
            yield from self._vertical()
            return
        groups, at = min(packed, key=lambda p: len(p[0]))
        for g, cols in enumerate(groups):
            widths = self._widths(cols, spans, at, width)
            yield self._table(cols, widths, first=g == 0, last=g == len(groups) - 1)


def _continued(title: Any) -> Any:
    """A continuation table's title: short, so it does not wrap over a narrow table."""
    return "(continued)" if title else title


def _text(value: Any, style: str) -> Text:
    """A cell or title as text in `style` (markup in strings and a Text's own styles kept)."""
    if isinstance(value, str):
        return Text.from_markup(value, style=style)
    if isinstance(value, Text):
        return Text.assemble(value, style=style)
    return Text(str(value), style=style)
