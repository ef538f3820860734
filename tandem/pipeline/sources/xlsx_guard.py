"""Pre-parse checks of an .xlsx workbook's bytes, before any native Excel parser sees them.

Standard library only (``zipfile`` for the directory, ``zlib`` to stream each part,
``re`` and ``pyexpat`` to scan sheet XML). Nothing is ever decompressed whole: every part
is streamed in ``chunk_bytes`` pieces and never beyond the size its zip entry declares, so
the guard's own memory stays at a few chunks whatever the input.

What it refuses, each with a sentence a clinic can act on (:class:`WorkbookRefused`):

* not a zip / an old ``.xls`` or encrypted (OLE) file / a password-protected entry;
* too large a file, too many parts, parts that overlap (a crafted zip), a compression
  method Excel does not write, sizes in the zip directory that the data contradicts;
* a part that unpacks beyond ``max_member_bytes`` / all parts beyond ``max_total_bytes``,
  or a part packed more than ``max_ratio`` times (a zip bomb: real sheet XML packs 5-20x);
* XML with a DOCTYPE, in UTF-16/32, or in a non-ASCII-compatible encoding;
* a sheet whose used range (what the parser will allocate: calamine keeps a dense
  rows x columns grid of 32-byte cells) exceeds ``max_cells_per_sheet``, or cells beyond
  Excel's last row/column (calamine wraps row numbers at 2^32 and allocates up to them).

The used range is found by scanning every cell tag, not by trusting ``<dimension>``
(calamine ignores that element, so it can lie either way; it is only reported). Two scans:

* a fast one (regular expressions and byte counts, ~0.5 s per million cells) that applies
  when every cell tag has the plain ``<c r="B7"`` form Excel and every common writer emit,
  and proves it by counting, chunk by chunk, that no other cell tag and no second ``r``
  attribute exists;
* an exact one (``pyexpat``, ~1 s per million cells) that follows calamine's rules for
  cells and rows without ``r`` (the next column / next row), prefixed tags (``<x:c>``),
  comments, CDATA and entities; used when the fast scan cannot prove its answer, and to
  confirm (and describe) every refusal the fast scan would make.

Limits are parameters (:class:`XlsxLimits`); :func:`check_xlsx` returns an
:class:`XlsxReport` or raises :class:`WorkbookRefused` and never anything else.
"""

from __future__ import annotations

import io
import os
import re
import struct
import time
import xml.parsers.expat as expat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import BinaryIO

__all__ = [
    "EXCEL_MAX_COLS",
    "EXCEL_MAX_ROWS",
    "SheetExtent",
    "WorkbookRefused",
    "XlsxLimits",
    "XlsxReport",
    "check_xlsx",
    "col_letters",
]

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLS = 16_384
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


class WorkbookRefused(Exception):
    """The workbook is not handed to a parser. ``reason`` is safe to show the clinic: it
    names sizes, positions, part paths and sheet names, never cell contents."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class XlsxLimits:
    max_file_bytes: int = 100_000_000        # the .xlsx file itself
    max_members: int = 2_000                 # parts in the zip (a workbook has ~10-60)
    max_central_directory_bytes: int = 2 * MiB
    max_member_bytes: int = 250_000_000      # any one part, unpacked
    max_total_bytes: int = 500_000_000       # all parts, unpacked
    max_ratio: float = 100.0                 # unpacked / packed, for parts >= ratio_floor
    ratio_floor_bytes: int = 1 * MiB
    max_sheets: int = 256
    max_cells_per_sheet: int = 20_000_000    # used range rows x columns (~640 MB in calamine)
    max_cells_total: int = 50_000_000        # summed over sheets
    max_metadata_bytes: int = 8 * MiB        # workbook.xml, its .rels
    max_tag_bytes: int = 64 * KiB            # one XML tag (a cell tag is ~30 bytes)
    chunk_bytes: int = 256 * KiB             # streaming piece
    scan_cells: bool = True                  # False: zip checks + <dimension> only (unsound alone)
    scan_method: str = "auto"                # auto (fast, exact when needed) | exact


@dataclass
class SheetExtent:
    part: str
    name: str | None
    dimension: str | None            # the <dimension ref>, as written (informational)
    min_row: int = 0
    max_row: int = 0
    min_col: int = 0
    max_col: int = 0
    far_col_cell: str | None = None  # the cell that sets the last column
    far_row_cell: str | None = None  # the cell that sets the last row
    method: str = "fast"             # fast | exact | dimension
    partial: bool = False            # scan stopped early: the range is at least this big

    @property
    def cells(self) -> int:
        if not self.max_row:
            return 0
        return (self.max_row - self.min_row + 1) * (self.max_col - self.min_col + 1)

    @property
    def used_range(self) -> str | None:
        if not self.max_row:
            return None
        return (f"{col_letters(self.min_col)}{self.min_row}:"
                f"{col_letters(self.max_col)}{self.max_row}")

    @property
    def dimension_agrees(self) -> bool | None:
        if self.dimension is None or self.method == "dimension":
            return None
        dim = _parse_dimension(self.dimension)
        return dim is not None and self.max_row > 0 and dim == (
            self.min_row, self.min_col, self.max_row, self.max_col)


@dataclass
class XlsxReport:
    file_bytes: int
    members: int
    unpacked_bytes: int
    max_ratio: float
    sheets: list[SheetExtent] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_cells(self) -> int:
        return sum(s.cells for s in self.sheets)


# ----------------------------------------------------------------------------- helpers


@lru_cache(maxsize=32768)
def _col_number(letters: bytes) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ch - 64)
    return n


def col_letters(n: int) -> str:
    """1 -> A, 16384 -> XFD."""
    out = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out or "?"


def _parse_dimension(ref: str) -> tuple[int, int, int, int] | None:
    parts = ref.strip().upper().replace("$", "").split(":")
    cells = []
    for p in parts[:2]:
        m = re.fullmatch(r"([A-Z]{1,7})([0-9]{1,10})", p)
        if not m:
            return None
        cells.append((int(m.group(2)), _col_number(m.group(1).encode())))
    if len(cells) == 1:
        cells.append(cells[0])
    (r1, c1), (r2, c2) = cells
    return min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2)


def _bytes(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _about(n: int) -> str:
    if n >= 10**9:
        return f"about {n / 10**9:.0f} billion"
    if n >= 10**6:
        return f"about {n / 10**6:.1f} million"
    return f"{n:,}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _label(name: str | None, part: str) -> str:
    """A sheet's name for a message: Excel caps names at 31 characters; no control chars."""
    if not name:
        return f"part {part!r}"
    clean = _CONTROL.sub("?", name)
    return "sheet " + repr(clean if len(clean) <= 31 else clean[:31] + "…")


class _Refuse:
    """Message builders (one place, so every refusal reads the same way)."""

    def __init__(self, source: str):
        self.src = source

    def damaged(self, what: str) -> WorkbookRefused:
        return WorkbookRefused(
            "damaged",
            f"{self.src} is damaged or was not written by a spreadsheet program ({what}); "
            f"open it in Excel and save it again as 'Excel Workbook (.xlsx)', or export the "
            f"data as CSV")


# ----------------------------------------------------------------------------- zip layer

_LOCAL = struct.Struct("<4s5H3L2H")  # local file header, 30 bytes


def _data_end(fp: BinaryIO, info: zipfile.ZipInfo, bad: _Refuse) -> int:
    """Where the part's packed data ends, from its local header."""
    fp.seek(info.header_offset)
    head = fp.read(_LOCAL.size)
    if len(head) != _LOCAL.size or head[:4] != b"PK\x03\x04":
        raise bad.damaged(f"part {info.filename!r} has no local header")
    nlen, xlen = _LOCAL.unpack(head)[-2:]
    return info.header_offset + _LOCAL.size + nlen + xlen + info.compress_size


def _member_chunks(fp: BinaryIO, info: zipfile.ZipInfo, chunk: int,
                   bad: _Refuse) -> Iterator[bytes]:
    """The part's unpacked bytes, chunk by chunk, read from its local header on.

    Never produces more than ``info.file_size`` bytes (the caller checked that against the
    limits) and refuses when the data contradicts the declared sizes either way."""
    fp.seek(info.header_offset)
    head = fp.read(_LOCAL.size)
    if len(head) != _LOCAL.size or head[:4] != b"PK\x03\x04":
        raise bad.damaged(f"part {info.filename!r} has no local header")
    _, _, flags, method, _, _, _, _, _, nlen, xlen = _LOCAL.unpack(head)
    raw_name = fp.read(nlen)
    try:
        local_name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
    except UnicodeDecodeError:
        local_name = None
    if local_name != info.orig_filename:
        raise bad.damaged(f"part {info.filename!r} has two different names in the zip")
    if flags & 0x1:
        raise WorkbookRefused(
            "encrypted", f"{bad.src} is password-protected: save a copy without a password "
                         f"(File > Info > Protect Workbook) and send that")
    if method != info.compress_type:
        raise bad.damaged(f"part {info.filename!r} names two compression methods")
    fp.seek(xlen, os.SEEK_CUR)
    left_in = info.compress_size
    left_out = info.file_size
    if method == zipfile.ZIP_STORED:
        if left_in != left_out:
            raise bad.damaged(f"part {info.filename!r} declares sizes that disagree")
        while left_in:
            piece = fp.read(min(chunk, left_in))
            if not piece:
                raise bad.damaged(f"part {info.filename!r} is cut short")
            left_in -= len(piece)
            yield piece
        return
    inflater = zlib.decompressobj(-15)
    while True:
        if inflater.unconsumed_tail:
            data = inflater.unconsumed_tail
        elif left_in and not inflater.eof:
            # small reads: ~chunk of output each at normal ratios, so few tail copies
            data = fp.read(min(max(chunk // 8, 16 * KiB), left_in))
            if not data:
                raise bad.damaged(f"part {info.filename!r} is cut short")
            left_in -= len(data)
        else:
            break
        # at most left_out + 1 bytes: one byte more than declared is enough to refuse
        out = inflater.decompress(data, min(chunk, left_out + 1))
        if len(out) > left_out:
            raise bad.damaged(f"part {info.filename!r} unpacks to more than its declared size")
        left_out -= len(out)
        if out:
            yield out
        if inflater.eof:
            break
    if not inflater.eof:
        raise bad.damaged(f"part {info.filename!r} is cut short")
    if left_out:
        raise bad.damaged(f"part {info.filename!r} unpacks to less than its declared size")


# ----------------------------------------------------------------------------- sheet scans

_DIMENSION = re.compile(
    rb"<(?:[A-Za-z_][\w.\-]*:)?dimension\b[^>]*?\bref\s*=\s*[\"']([^\"'<>]{1,64})[\"']")
_XML_DECL_ENC = re.compile(rb"^\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._\-]{1,40})[\"']")
_OK_ENCODINGS = {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1",
                 "windows-1252", "cp1252"}

# fast scan: a cell tag in the form every writer we know emits ...
_FAST_COL = re.compile(rb'<c r="([A-Z]{1,3})[0-9]{1,7}"')
_FAST_ROW = re.compile(rb'<c r="[A-Z]{1,3}([0-9]{1,7})"')
# ... and what would make its answer unprovable
_OTHER_C = re.compile(rb"<c[^ \t\r\n/>]")          # <col, <cfRule, <c:chart ... (not cells)
_PREFIXED_C = re.compile(rb":c[ \t\r\n/>]")        # <x:c ...> (a cell with a prefix)
_BANG = re.compile(rb"<!")                         # comment, CDATA, DOCTYPE
_WS_TO_SPACE = bytes.maketrans(b"\t\r\n", b"   ")


class _NeedExact(Exception):
    """The fast scan cannot prove its answer for this part."""


class _Exceeded(Exception):
    """The used range found so far is already over the limit: stop scanning."""


class _Extent:
    __slots__ = ("min_row", "max_row", "min_col", "max_col", "far_col", "far_row", "limit",
                 "partial")

    def __init__(self, limit: int = 0):
        self.min_row = self.min_col = 1 << 62
        self.max_row = self.max_col = 0
        self.far_col = self.far_row = None
        self.limit = limit  # 0: no early stop
        self.partial = False

    def add(self, row: int, col: int) -> None:
        grew = False
        if row < self.min_row:
            self.min_row, grew = row, True
        if col < self.min_col:
            self.min_col, grew = col, True
        if row > self.max_row:
            self.max_row, self.far_row, grew = row, (row, col), True
        if col > self.max_col:
            self.max_col, self.far_col, grew = col, (row, col), True
        if grew and self.limit and (self.max_row - self.min_row + 1) * (
                self.max_col - self.min_col + 1) > self.limit:
            self.partial = True
            raise _Exceeded

    def to_sheet(self, sheet: SheetExtent, method: str) -> SheetExtent:
        sheet.method = method
        if self.max_row:
            sheet.min_row, sheet.max_row = self.min_row, self.max_row
            sheet.min_col, sheet.max_col = self.min_col, self.max_col
            sheet.far_col_cell = f"{col_letters(self.far_col[1])}{self.far_col[0]}"
            sheet.far_row_cell = f"{col_letters(self.far_row[1])}{self.far_row[0]}"
        return sheet


class _TagTracker:
    """Bounds the length of an unfinished tag across chunks (memory of the scanners)."""

    def __init__(self, limit: int, bad: _Refuse, part: str):
        self.open = 0
        self.limit, self.bad, self.part = limit, bad, part

    def feed(self, chunk: bytes) -> None:
        lt, gt = chunk.rfind(b"<"), chunk.rfind(b">")
        if lt > gt:
            self.open = len(chunk) - lt
        elif gt >= 0:
            self.open = 0
        elif self.open:
            self.open += len(chunk)
        if self.open > self.limit:
            raise self.bad.damaged(f"part {self.part!r} has an XML tag longer than "
                                   f"{self.limit:,} bytes")


def _fast_scan(chunks: Iterator[bytes], limits: XlsxLimits, bad: _Refuse,
               part: str) -> _Extent:
    ext = _Extent()
    carry = b""
    for piece in chunks:
        buf = carry + piece if carry else piece
        k = buf.rfind(b"<")
        if k >= 0 and buf.find(b">", k) < 0:
            carry, buf = buf[k:], buf[:k]
            if len(carry) > limits.max_tag_bytes:
                raise _NeedExact  # the exact scan words the refusal
        else:
            carry = b""
        if buf:
            _fast_chunk(buf, ext)
            if _too_big(ext, limits):
                raise _NeedExact  # the exact scan confirms, words the refusal, stops early
    if carry:
        _fast_chunk(carry, ext)
    return ext


def _fast_chunk(buf: bytes, ext: _Extent) -> None:
    if _BANG.search(buf) or _PREFIXED_C.search(buf):
        raise _NeedExact
    # every '<c' is either a cell tag or another element ('<col', '<cfRule', ...)
    n_cells = buf.count(b"<c") - len(_OTHER_C.findall(buf))
    if not n_cells:
        return
    cols = _FAST_COL.findall(buf)
    if n_cells != len(cols):  # some cell tag is not in the plain form
        raise _NeedExact
    # ... and no cell tag carries a second r attribute (calamine takes the last one):
    # attributes named r = ' r=' after folding whitespace; rows account for the rest.
    # (quick-xml also takes attributes with no space between them: r="A1"r="XFD1")
    folded = buf.translate(_WS_TO_SPACE)
    if (folded.count(b" r=") != len(cols) + folded.count(b"<row r=") or b" r " in folded
            or b'"r' in folded or b"'r" in folded):
        raise _NeedExact
    if not cols:
        return
    rows = _FAST_ROW.findall(buf)
    col_set, row_set = set(cols), set(rows)
    cmax = max(col_set, key=lambda c: (len(c), c))
    cmin = min(col_set, key=lambda c: (len(c), c))
    rmax = max(row_set, key=lambda r: (len(r.lstrip(b"0")), r.lstrip(b"0")))
    rmin = min(row_set, key=lambda r: (len(r.lstrip(b"0")), r.lstrip(b"0")))
    # far cells: the first cell in this chunk on the last column / the last row
    i = cols.index(cmax)
    ext.add(int(rows[i]), _col_number(cmax))
    j = rows.index(rmax)
    ext.add(int(rmax), _col_number(cols[j]))
    ext.add(int(rmin), _col_number(cmin))


_DIGITS = "0123456789"
_CELL_CHILDREN = frozenset({"v", "f", "is"})


@lru_cache(maxsize=32768)
def _col_of(letters: str) -> int:
    if not letters.isascii() or not letters.isalpha():
        return -1
    return _col_number(letters.encode())


class _ExactScan:
    """calamine's positions: a cell's r wins; a cell without r takes the next column of
    its row; a row without r is the next row. A cell counts toward the used range when a
    <v>, <f> or <is> child follows it, which over-approximates calamine (it also skips
    <v></v> and formula-only cells; both ignore text directly inside <c>)."""

    def __init__(self, bad: _Refuse, part: str, label: str, tags: _TagTracker,
                 max_cells: int = 0):
        self.bad, self.part, self.label, self.tags = bad, part, label, tags
        self.ext = _Extent(max_cells)
        self.row = 0
        self.col = 0
        self.pending: tuple[int, int] | None = None
        p = expat.ParserCreate()
        p.ordered_attributes = True
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._doctype
        p.StartElementHandler = self._start
        self.p = p

    def _doctype(self, *_a) -> None:
        raise self.bad.damaged(f"part {self.part!r} declares a DOCTYPE, which Excel never writes")

    def _r(self, attrs: list[str]) -> str | None:
        if not attrs:
            return None
        keys = attrs[0::2]
        n = keys.count("r")  # calamine matches the exact name; x:r is another attribute
        if not n:
            return None
        if n > 1:  # expat refuses duplicates already; kept for clarity
            raise self.bad.damaged(f"{self.label} has a tag with two positions")
        return attrs[2 * keys.index("r") + 1]

    def _beyond(self, what: str, n: int, limit: int, limit_name: str) -> WorkbookRefused:
        return WorkbookRefused(
            "beyond_excel",
            f"{self.bad.src}: {self.label} has a cell at {what} {n:,}, beyond Excel's "
            f"{limit_name} ({limit:,}); the file was not saved by Excel and cannot be read "
            f"safely: open it in Excel and save it again, or export the data as CSV")

    def _start(self, name: str, attrs: list[str]) -> None:
        local = name if ":" not in name else name.rpartition(":")[2]
        if self.pending is not None:
            if local in _CELL_CHILDREN:
                self.ext.add(*self.pending)
            self.pending = None
        if local == "c":
            r = self._r(attrs)
            if r is None:
                row, col = max(self.row, 1), self.col + 1
            else:
                k = len(r.rstrip(_DIGITS))
                letters, digits = r[:k].lstrip("$").rstrip("$"), r[k:]
                col = _col_of(letters) if 0 < len(letters) <= 3 else (
                    -1 if not letters.isalpha() or not letters.isascii() else EXCEL_MAX_COLS + 1)
                if col < 0 or not digits or not digits.isascii():
                    raise self.bad.damaged(f"{self.label} has a cell position that is not "
                                           f"a cell reference")
                row = int(digits) if len(digits) <= 12 else EXCEL_MAX_ROWS + 1
            if col > EXCEL_MAX_COLS:
                raise self._beyond("column", col, EXCEL_MAX_COLS, "last column XFD")
            if row > EXCEL_MAX_ROWS:
                raise self._beyond("row", row, EXCEL_MAX_ROWS, "last row")
            self.col = col
            self.pending = (row, col)
        elif local == "row":
            r = self._r(attrs)
            if r is None:
                self.row += 1
            else:
                if not r.isdigit() or not r.isascii() or len(r) > 12:
                    raise self.bad.damaged(f"{self.label} has a row number that is not a number")
                self.row = int(r)
            if self.row > EXCEL_MAX_ROWS:
                raise self._beyond("row", self.row, EXCEL_MAX_ROWS, "last row")
            self.col = 0

    def run(self, chunks: Iterator[bytes]) -> _Extent:
        try:
            for piece in chunks:
                self.tags.feed(piece)
                self.p.Parse(piece, False)
            self.p.Parse(b"", True)
        except _Exceeded:
            pass  # ext.partial: the range so far already exceeds the limit
        except expat.ExpatError as exc:
            # expat's message is a fixed phrase plus a position: no document text
            raise self.bad.damaged(
                f"{self.label} is not well-formed XML: {expat.ErrorString(exc.code)} at "
                f"line {exc.lineno}, column {exc.offset}") from None
        return self.ext


# ----------------------------------------------------------------------------- workbook


def _sheet_names(fp: BinaryIO, zf: zipfile.ZipFile, limits: XlsxLimits,
                 bad: _Refuse) -> dict[str, str]:
    """part path -> sheet name, from xl/workbook.xml and its .rels (for messages only)."""

    def text(name: str) -> bytes | None:
        try:
            info = zf.getinfo(name)
        except KeyError:
            return None
        if info.file_size > limits.max_metadata_bytes:
            raise WorkbookRefused(
                "too_large", f"{bad.src} has a workbook index of {_bytes(info.file_size)}; "
                             f"Excel writes a few KB: save the workbook again from Excel")
        return b"".join(_member_chunks(fp, info, limits.chunk_bytes, bad))

    wb, rels = text("xl/workbook.xml"), text("xl/_rels/workbook.xml.rels")
    if wb is None:
        return {}
    sheets = re.findall(rb"<(?:[\w.\-]+:)?sheet\b([^>]*)>", wb)
    if len(sheets) > limits.max_sheets:
        raise WorkbookRefused(
            "too_many_sheets", f"{bad.src} has {len(sheets):,} sheets; Tandem accepts at most "
                               f"{limits.max_sheets:,}: split the workbook")
    targets: dict[str, str] = {}
    for attrs in re.findall(rb"<(?:[\w.\-]+:)?Relationship\b([^>]*)>", rels or b""):
        rid = re.search(rb"\bId\s*=\s*[\"']([^\"']*)[\"']", attrs)
        tgt = re.search(rb"\bTarget\s*=\s*[\"']([^\"']*)[\"']", attrs)
        if rid and tgt:
            t = tgt.group(1).decode("utf-8", "replace")
            t = t.lstrip("/") if t.startswith("/") else "xl/" + t
            targets[rid.group(1).decode("utf-8", "replace")] = os.path.normpath(t)
    out = {}
    for attrs in sheets:
        name = re.search(rb"\bname\s*=\s*[\"']([^\"']*)[\"']", attrs)
        rid = re.search(rb"\b[\w.\-]+:id\s*=\s*[\"']([^\"']*)[\"']", attrs)
        if name and rid and rid.group(1).decode("utf-8", "replace") in targets:
            out[targets[rid.group(1).decode("utf-8", "replace")]] = _unescape(
                name.group(1).decode("utf-8", "replace"))
    return out


def _unescape(s: str) -> str:
    def sub(m: re.Match) -> str:
        ent = m.group(1)
        try:
            if ent.startswith("#x"):
                return chr(int(ent[2:], 16))
            if ent.startswith("#"):
                return chr(int(ent[1:]))
        except (ValueError, OverflowError):
            return "?"
        return {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}.get(ent, "?")
    return re.sub(r"&(#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|[A-Za-z]{1,8});", sub, s)


def check_xlsx(data: bytes | bytearray | memoryview | BinaryIO | str | os.PathLike,
               limits: XlsxLimits = XlsxLimits(), *,
               source_name: str = "the workbook") -> XlsxReport:
    """Check an .xlsx before parsing it; an :class:`XlsxReport`, or :class:`WorkbookRefused`.

    ``source_name`` starts the refusal sentences (e.g. the file's name)."""
    t0 = time.perf_counter()
    bad = _Refuse(source_name)
    own = None
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            fp: BinaryIO = io.BytesIO(data)
        elif isinstance(data, (str, os.PathLike)):
            fp = own = open(data, "rb")  # noqa: SIM115 - closed in the finally below
        else:
            fp = data
        try:
            report = _check(fp, limits, bad)
        except WorkbookRefused:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, struct.error,
                zlib.error, ValueError, OverflowError, IndexError, KeyError, OSError,
                NotImplementedError, UnicodeError, RecursionError) as exc:
            raise bad.damaged(f"the zip structure cannot be read: {type(exc).__name__}") from None
    finally:
        if own is not None:
            own.close()
    report.seconds = time.perf_counter() - t0
    return report


def _check(fp: BinaryIO, limits: XlsxLimits, bad: _Refuse) -> XlsxReport:
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    fp.seek(0)
    head = fp.read(8)
    if size > limits.max_file_bytes:
        raise WorkbookRefused(
            "too_large", f"{bad.src} is {_bytes(size)}; Tandem accepts workbooks up to "
                         f"{_bytes(limits.max_file_bytes)}: split the data into several "
                         f"workbooks (for example one per quarter)")
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        raise WorkbookRefused(
            "old_or_encrypted", f"{bad.src} is an old-format Excel file (.xls) or a "
                                f"password-protected workbook: open it in Excel and save it "
                                f"as 'Excel Workbook (.xlsx)' without a password")
    if not head.startswith(b"PK\x03\x04"):
        raise WorkbookRefused(
            "not_xlsx", f"{bad.src} is not an Excel .xlsx workbook (it is not a zip package); "
                        f"if it is a CSV or an .xls renamed to .xlsx, send it under its real "
                        f"type or save it from Excel as 'Excel Workbook (.xlsx)'")
    # The central directory's size, before zipfile builds an object per entry.
    end = zipfile._EndRecData(fp) if hasattr(zipfile, "_EndRecData") else None
    if end is None:
        raise bad.damaged("the zip directory is missing")
    if end[zipfile._ECD_SIZE] > limits.max_central_directory_bytes:
        raise WorkbookRefused(
            "too_many_parts", f"{bad.src} has a zip directory of "
                              f"{_bytes(end[zipfile._ECD_SIZE])}; a workbook's is a few KB: "
                              f"save the workbook again from Excel")
    fp.seek(0)
    zf = zipfile.ZipFile(fp)
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise WorkbookRefused(
            "too_many_parts", f"{bad.src} holds {len(infos):,} parts; an Excel workbook has a "
                              f"few dozen and Tandem accepts at most {limits.max_members:,}: "
                              f"save the workbook again from Excel")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise bad.damaged("two parts have the same name")
    total = 0
    worst = 0.0
    for i in infos:
        if i.flag_bits & 0x1:
            raise WorkbookRefused(
                "encrypted", f"{bad.src} is password-protected: save a copy without a password "
                             f"(File > Info > Protect Workbook) and send that")
        if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise bad.damaged(f"part {i.filename!r} uses a compression method Excel does not "
                              f"write")
        if i.file_size > limits.max_member_bytes:
            raise WorkbookRefused(
                "too_large", f"{bad.src} has a part ({i.filename!r}) that unpacks to "
                             f"{_bytes(i.file_size)}; Tandem accepts at most "
                             f"{_bytes(limits.max_member_bytes)} per part: split the data into "
                             f"several workbooks or send it as CSV")
        total += i.file_size
        ratio = i.file_size / max(i.compress_size, 1)
        worst = max(worst, ratio)
        if i.file_size >= limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise WorkbookRefused(
                "zip_bomb", f"{bad.src} has a part ({i.filename!r}) that unpacks to "
                            f"{_bytes(i.file_size)} from {_bytes(i.compress_size)} ({ratio:,.0f} "
                            f"times smaller when packed; a real sheet packs 5 to 20 times): the "
                            f"file is malformed or crafted; open it in Excel and save it again, "
                            f"or export the data as CSV")
    if total > limits.max_total_bytes:
        raise WorkbookRefused(
            "too_large", f"{bad.src} unpacks to {_bytes(total)}; Tandem accepts workbooks that "
                         f"unpack to at most {_bytes(limits.max_total_bytes)}: split the data "
                         f"into several workbooks or send it as CSV")
    # Parts must not share bytes (the overlapping-entries zip bomb), nor run into the
    # central directory.
    spans = sorted((i.header_offset, _data_end(fp, i, bad), i.filename) for i in infos)
    for (s1, e1, n1), (s2, _e2, _n2) in zip(spans, spans[1:], strict=False):
        if s2 < e1 or s1 == s2:
            raise bad.damaged(f"part {n1!r} overlaps another part")
    if spans and spans[-1][1] > getattr(zf, "start_dir", size):
        raise bad.damaged("a part runs into the zip directory")

    sheet_names = _sheet_names(fp, zf, limits, bad)
    sheets: list[SheetExtent] = []
    unpacked = 0
    cells_total = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.is_dir():
            continue
        part = info.filename
        label = _label(sheet_names.get(part), part)
        chunks = _member_chunks(fp, info, limits.chunk_bytes, bad)
        first = next(chunks, b"")
        unpacked += len(first)
        body = first.lstrip(b" \t\r\n")
        looks_xml = (part.lower().endswith((".xml", ".rels", ".vml")) or part in sheet_names
                     or body.startswith((b"<", b"\xef\xbb\xbf<")))
        if not looks_xml:
            unpacked += sum(len(c) for c in chunks)
            continue
        if (body.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff"))
                or b"\x00" in first[:64]):
            raise WorkbookRefused(
                "encoding", f"{bad.src}: {label} is stored in UTF-16/32 text, which Excel never "
                            f"writes: open the file in Excel and save it again")
        enc = _XML_DECL_ENC.match(body.removeprefix(b"\xef\xbb\xbf"))
        if enc and enc.group(1).decode().lower() not in _OK_ENCODINGS:
            raise WorkbookRefused(
                "encoding", f"{bad.src}: {label} is stored in an unusual text encoding: open "
                            f"the file in Excel and save it again")
        dim = _DIMENSION.search(first)
        sheet = SheetExtent(part, sheet_names.get(part),
                            dim.group(1).decode("ascii", "replace") if dim else None)
        if not limits.scan_cells:
            unpacked += sum(len(c) for c in chunks)
            bounds = _parse_dimension(sheet.dimension) if sheet.dimension else None
            if bounds:
                sheet.min_row, sheet.min_col, sheet.max_row, sheet.max_col = bounds
                sheet.method = "dimension"
                sheet.far_col_cell = sheet.far_row_cell = (
                    f"{col_letters(sheet.max_col)}{sheet.max_row}")
                _check_extent(sheet, limits, bad, label)
                sheets.append(sheet)
            continue

        def stream(info=info):
            return _member_chunks(fp, info, limits.chunk_bytes, bad)

        try:
            if limits.scan_method == "exact":
                raise _NeedExact
            ext = _fast_scan(_chain(first, chunks), limits, bad, part)
            method = "fast"
            if _too_big(ext, limits):
                raise _NeedExact
        except _NeedExact:
            chunks.close()
            # re-stream the part (bounded by its declared size) and scan it exactly
            ext = _ExactScan(bad, part, label, _TagTracker(limits.max_tag_bytes, bad, part),
                             limits.max_cells_per_sheet).run(stream())
            method = "exact"
        # either scan read the part to its end, so its size was verified on the way
        unpacked += info.file_size - len(first)
        sheet.partial = ext.partial
        if not ext.max_row:
            continue
        ext.to_sheet(sheet, method)
        _check_extent(sheet, limits, bad, label)
        cells_total += sheet.cells
        if cells_total > limits.max_cells_total:
            raise WorkbookRefused(
                "too_many_cells", f"{bad.src}: its sheets span {_about(cells_total)} cells in "
                                  f"all; Tandem accepts at most {limits.max_cells_total:,} per "
                                  f"workbook: split the workbook or export only the used ranges")
        sheets.append(sheet)
    return XlsxReport(size, len(infos), unpacked, worst, sheets)


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _too_big(ext: _Extent, limits: XlsxLimits) -> bool:
    if not ext.max_row:
        return False
    cells = (ext.max_row - ext.min_row + 1) * (ext.max_col - ext.min_col + 1)
    return (cells > limits.max_cells_per_sheet or ext.max_row > EXCEL_MAX_ROWS
            or ext.max_col > EXCEL_MAX_COLS)


def _check_extent(sheet: SheetExtent, limits: XlsxLimits, bad: _Refuse, label: str) -> None:
    if sheet.max_row > EXCEL_MAX_ROWS or sheet.max_col > EXCEL_MAX_COLS:
        raise WorkbookRefused(
            "beyond_excel", f"{bad.src}: {label} reaches {sheet.far_col_cell}, beyond Excel's "
                            f"last cell XFD1048576; the file was not saved by Excel and cannot "
                            f"be read safely: open it in Excel and save it again")
    if sheet.cells <= limits.max_cells_per_sheet:
        return
    stray = sorted({sheet.far_col_cell, sheet.far_row_cell})
    where = " and ".join(stray)
    basis = ("according to its <dimension> element" if sheet.method == "dimension" else "")
    more = " or more" if sheet.partial else ""  # the scan stopped once over the limit
    raise WorkbookRefused(
        "too_many_cells",
        f"{bad.src}: {label} spans columns {col_letters(sheet.min_col)} to "
        f"{col_letters(sheet.max_col)} and {sheet.max_row - sheet.min_row + 1:,} rows "
        f"({_about(sheet.cells)} cells{more}{', ' + basis if basis else ''}); Tandem accepts "
        f"at most {limits.max_cells_per_sheet:,} cells per sheet: delete the stray "
        f"cell{'s' if len(stray) > 1 else ''} at {where} (or clear everything outside the "
        f"data) and save again, or export only the used range")
