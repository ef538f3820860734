"""Hypothesis strategies for bad input: mutated clinic files of every format.

Every strategy starts from real generated files (``tandem.synth``) so mutations reach
deep into each reader instead of stopping at the first byte.
"""

from __future__ import annotations

import functools
import io
import json
import os
import zipfile

from hypothesis import strategies as st

# Field values that break naive parsers: impossible dates, numbers that are not, formula
# injection, quotes and line breaks inside a field, control and non-UTF-8-looking chars.
SPECIAL_VALUES = (
    "0000-00-00", "2026-02-30", "9999-99-99", "31/02/2026", "-1", "1e309", "NaN", "inf",
    "-0", "4,5", "  ", "", "null", "=1+1", "=HYPERLINK(\"http://x\")", "@SUM(A1)",
    "\"", "\"\"", "a\nb", "a\r\nb", "\"quoted, with comma\"", "\x00", "\u202e", "é", "𝔘",
    "9" * 40, "A" * 5000,
)


def _positions(data: bytes) -> st.SearchStrategy[int]:
    return st.integers(0, max(len(data) - 1, 0))


def byte_mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Truncation, junk inserted or overwritten, a region dropped or repeated, pure junk."""
    pos = _positions(seed)
    junk = st.binary(min_size=1, max_size=64)
    return st.one_of(
        pos.map(lambda i: seed[:i]),  # truncated
        st.tuples(pos, junk).map(lambda t: seed[: t[0]] + t[1] + seed[t[0]:]),
        st.tuples(pos, junk).map(lambda t: seed[: t[0]] + t[1] + seed[t[0] + len(t[1]):]),
        st.tuples(pos, st.integers(1, 400)).map(lambda t: seed[: t[0]] + seed[t[0] + t[1]:]),
        st.tuples(pos, st.integers(1, 400)).map(
            lambda t: seed[: t[0] + t[1]] + seed[t[0]: t[0] + t[1]] + seed[t[0]:]),
        st.binary(max_size=4096),  # binary junk
        st.sampled_from([b"", b"\n", b"\xef\xbb\xbf", b"\x00" * 1000, b"\xff\xfe\x00a"]),
    )


def _quote_csv(value: str) -> str:
    if any(c in value for c in ",\"\r\n"):
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_field_mutations(seed: bytes, encoding: str = "utf-8") -> st.SearchStrategy[bytes]:
    """One field of one record replaced by a special value (quoted as CSV would, or raw)."""
    text = seed.decode(encoding, errors="replace")
    lines = text.splitlines(keepends=True)

    @st.composite
    def mutate(draw) -> bytes:
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        fields = lines[i].rstrip("\r\n").split(",")
        j = draw(st.integers(0, max(len(fields) - 1, 0)))
        value = draw(st.sampled_from(SPECIAL_VALUES) | st.text(max_size=30))
        fields[j] = _quote_csv(value) if draw(st.booleans()) else value
        end = lines[i][len(lines[i].rstrip("\r\n")):] or "\n"
        out = "".join(lines[:i]) + ",".join(fields) + end + "".join(lines[i + 1:])
        raw = out.encode(encoding, errors="replace")
        if draw(st.booleans()):  # a non-UTF-8 byte somewhere in the record
            k = len("".join(lines[:i]).encode(encoding, errors="replace"))
            raw = raw[:k] + draw(st.sampled_from([b"\xe9", b"\xff", b"\xc3", b"\x80"])) + raw[k:]
        return raw

    return mutate()


def _nested(depth: int) -> bytes:
    return (b'{"a":' * depth) + b"1" + (b"}" * depth)


def ndjson_mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Deep nesting, huge strings, wrong types and broken lines in a FHIR NDJSON file."""
    lines = seed.splitlines(keepends=True) or [b"{}\n"]

    def set_deep(obj: object, path: list[int], value: object) -> object:
        if isinstance(obj, dict) and obj:
            keys = sorted(obj)
            k = keys[path[0] % len(keys)]
            if len(path) == 1 or not isinstance(obj[k], dict | list) or not obj[k]:
                obj[k] = value
            else:
                obj[k] = set_deep(obj[k], path[1:], value)
        elif isinstance(obj, list) and obj:
            k = path[0] % len(obj)
            obj[k] = value if len(path) == 1 else set_deep(obj[k], path[1:], value)
        return obj

    @st.composite
    def mutate(draw) -> bytes:
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "deep", "line", "array"]))
        if kind == "deep":
            new = _nested(draw(st.sampled_from([100, 1000, 50_000]))) + b"\n"
        elif kind == "array":
            d = draw(st.sampled_from([10, 5000, 100_000]))
            new = b"[" * d + b"]" * d + b"\n"
        elif kind == "line":
            new = draw(st.binary(max_size=200)) + b"\n"
        else:
            try:
                obj = json.loads(lines[i])
            except ValueError:
                obj = {}
            path = draw(st.lists(st.integers(0, 20), min_size=1, max_size=8))
            value = draw(st.sampled_from([None, True, 1e308, -1, [], {}, "0000-00-00",
                                          "A" * 100_000, {"$ref": "../../etc/passwd"}])
                         | st.text(max_size=20))
            new = json.dumps(set_deep(obj, path, value)).encode() + b"\n"
        return b"".join(lines[:i]) + new + b"".join(lines[i + 1:])

    return mutate()


@functools.lru_cache(maxsize=8)
def excel_bombs(sheet: str) -> tuple[bytes, ...]:
    """The two workbooks that took the Excel parser down (issue 17), named like the seed's
    period sheet so a reader would parse them, and the same bomb with its sizes lying:

    - one cell at XFD1048576 beside A1 (8 KB): calamine asks for 512 GiB and aborts;
    - 64 MiB of sheet XML packed ~1,000 times (a zip bomb; 3 GiB in the issue);
    - that bomb with the zip directory declaring 1 MB for the sheet."""
    from tests.reliability.xlsx_factory import (
        patch_declared_size,
        stray_cell_xlsx,
        string_bomb_xlsx,
    )

    bomb = string_bomb_xlsx(64 << 20, sheet=sheet)
    lying = patch_declared_size(bomb, "xl/worksheets/sheet1.xml", 1_000_000)
    return stray_cell_xlsx(sheet=sheet), bomb, lying


def excel_mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Workbooks rewritten with formulas, impossible dates, huge text and odd sheets; and the
    bombs (:func:`excel_bombs`)."""
    import fastexcel

    book = fastexcel.read_excel(seed)
    sheets = {n: book.load_sheet(n, header_row=None, dtypes="string").to_polars().rows()
              for n in book.sheet_names}
    bombs = st.sampled_from(excel_bombs(book.sheet_names[0]))

    @st.composite
    def mutate(draw) -> bytes:
        import xlsxwriter

        changes = draw(st.lists(
            st.tuples(st.integers(0, 10_000), st.integers(0, 60),
                      st.sampled_from(["=1/0", "=A1*2", "=NOW()", '=CONCAT("a","b")',
                                       "0000-00-00", "A" * 32_000, "=HYPERLINK(\"x\")",
                                       "", "-5", "1e309", "formula-not", "\u202e"])),
            min_size=1, max_size=8))
        extra_sheet = draw(st.sampled_from([None, "Notes", "Feb 2026", "Xyz 2026", "00 0000"]))
        out = io.BytesIO()
        wb = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False})
        for name, rows in sheets.items():
            ws = wb.add_worksheet(name)
            grid = [list(r) for r in rows]
            for r, c, value in changes:
                if grid:
                    row = grid[r % len(grid)]
                    if row:
                        row[c % len(row)] = value
            for r, row in enumerate(grid):
                for c, value in enumerate(row):
                    if isinstance(value, str) and value.startswith("=") and value != "=":
                        ws.write_formula(r, c, value)
                    elif value is not None:
                        ws.write_string(r, c, str(value))
        if extra_sheet and extra_sheet not in sheets:
            ws = wb.add_worksheet(extra_sheet)
            ws.write_row(0, 0, ["Client ID", "Date", "=1/0"])
            ws.write_row(1, 0, ["X1", "0000-00-00", "A" * 1000])
        wb.close()
        data = out.getvalue()
        if draw(st.booleans()):
            return data
        # Or break the zip inside: drop or corrupt one member.
        zin = zipfile.ZipFile(io.BytesIO(data))
        names = zin.namelist()
        victim = draw(st.sampled_from(names))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zout:
            for n in names:
                if n == victim:
                    if draw(st.booleans()):
                        zout.writestr(n, zin.read(n)[: draw(st.integers(0, 200))])
                    continue
                zout.writestr(n, zin.read(n))
        return buf.getvalue()

    return st.one_of(mutate(), bombs)


def mutations_for(fmt: str, seed: bytes, encoding: str = "utf-8") -> st.SearchStrategy[bytes]:
    """Every applicable mutation of a seed file of the given format."""
    strategies = [byte_mutations(seed)]
    if fmt in ("canonical_csv", "redcap_csv"):
        strategies.append(csv_field_mutations(seed, encoding))
    elif fmt == "fhir_ndjson":
        strategies.append(ndjson_mutations(seed))
    elif fmt == "excel":
        strategies.append(excel_mutations(seed))
    else:  # a new format: bytes-level mutations, plus its text lines as CSV-like fields
        strategies.append(csv_field_mutations(seed, encoding))
    return st.one_of(*strategies)


# Names a clinic (or an attacker) might give a file: odd characters, not UTF-8, very long.
UTF8_FILE_NAMES = st.sampled_from(["x.csv", "x_corrected.csv", "x v2.csv", "..csv", "-rf.csv",
                     "name with spaces.csv", "ünïcode.csv", "semi;colon'quote\".csv",
                     "new\nline.csv", "a" * 200 + ".csv", "x.csv.exe", ".hidden.csv"])
FILE_NAMES = st.one_of(
    UTF8_FILE_NAMES,
    st.binary(min_size=1, max_size=40).filter(
        lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b"..")
    ).map(os.fsdecode),  # bytes that are not UTF-8 become surrogate escapes, as on disk
)
