"""Hand-made .xlsx files for tests: minimal valid packages and hostile ones, small on disk.

Every workbook is written with ``zipfile`` directly so the sheet XML is exactly what the
test says (cells without ``r``, lying ``<dimension>``, prefixes, ...), streamed so that a
bomb of gigabytes of XML never exists in memory.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterable

NS = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
CT = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
      b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
      b'<Default Extension="rels" ContentType="application/'
      b'vnd.openxmlformats-package.relationships+xml"/>'
      b'<Default Extension="xml" ContentType="application/xml"/>'
      b'<Override PartName="/xl/workbook.xml" ContentType="application/'
      b'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
      b'%s</Types>')
CT_SHEET = (b'<Override PartName="/xl/worksheets/sheet%d.xml" ContentType="application/'
            b'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>')
RELS = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        b'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>')
WB = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
      b'<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
      b'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
      b'<sheets>%s</sheets></workbook>')
WB_SHEET = b'<sheet name="%s" sheetId="%d" r:id="rId%d"/>'
WBRELS = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
          b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
          b'%s</Relationships>')
WBRELS_SHEET = (b'<Relationship Id="rId%d" Type="http://schemas.openxmlformats.org/'
                b'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet%d.xml"/>')


def sheet_xml(body: bytes, dimension: str | None = None) -> bytes:
    """A worksheet document around ``body`` (the content of <sheetData>)."""
    dim = b'<dimension ref="%s"/>' % dimension.encode() if dimension else b""
    return (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet ' + NS + b">"
            + dim + b"<sheetData>" + body + b"</sheetData></worksheet>")


def workbook(sheets: dict[str, bytes | Iterable[bytes]], *, level: int = 6,
             extra: dict[str, bytes] | None = None) -> bytes:
    """An .xlsx whose sheets' XML is given (bytes, or chunks streamed into the zip)."""
    buf = io.BytesIO()
    n = len(sheets)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        z.writestr("[Content_Types].xml", CT % b"".join(CT_SHEET % (i + 1) for i in range(n)))
        z.writestr("_rels/.rels", RELS)
        z.writestr("xl/workbook.xml", WB % b"".join(
            WB_SHEET % (name.encode(), i + 1, i + 1) for i, name in enumerate(sheets)))
        z.writestr("xl/_rels/workbook.xml.rels", WBRELS % b"".join(
            WBRELS_SHEET % (i + 1, i + 1) for i in range(n)))
        for i, xml in enumerate(sheets.values()):
            name = f"xl/worksheets/sheet{i + 1}.xml"
            if isinstance(xml, (bytes, bytearray)):
                z.writestr(name, bytes(xml))
            else:
                with z.open(name, "w", force_zip64=True) as f:
                    for chunk in xml:
                        f.write(chunk)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def one_sheet(body: bytes, dimension: str | None = None, name: str = "Sheet1") -> bytes:
    return workbook({name: sheet_xml(body, dimension)})


def stray_cell_xlsx(dimension: bool = True, sheet: str = "Sheet1") -> bytes:
    """A1 and XFD1048576: calamine allocates the 17-billion-cell grid (512 GiB) and aborts."""
    body = (b'<row r="1"><c r="A1" t="inlineStr"><is><t>client_id</t></is></c></row>'
            b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>')
    return one_sheet(body, "A1:XFD1048576" if dimension else None, name=sheet)


def string_bomb_xlsx(target_bytes: int, cols: int = 2, chars: int = 1 << 20,
                     sheet: str = "Sheet1") -> bytes:
    """Sheet XML of ~target_bytes: inline-string cells of ``chars`` copies of one letter.
    Deflate packs it ~1,000:1 (3 GiB of XML in ~3 MB)."""
    cell = b'<c t="inlineStr"><is><t>' + b"A" * chars + b"</t></is></c>"
    row = b"<row>" + cell * cols + b"</row>"

    def gen():
        yield (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet ' + NS
               + b"><sheetData>")
        for _ in range(max(1, target_bytes // len(row))):
            yield row
        yield b"</sheetData></worksheet>"
    return workbook({sheet: gen()}, level=9)


def numeric_bomb_xlsx(target_bytes: int, cols: int = 10) -> bytes:
    """Sheet XML of ~target_bytes of identical numeric rows (no r): ~260:1 packed."""
    row = b"<row>" + b"<c><v>1</v></c>" * cols + b"</row>"
    block = row * 4096

    def gen():
        yield (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet ' + NS
               + b"><sheetData>")
        n = max(1, target_bytes // len(row))
        for _ in range(n // 4096):
            yield block
        yield row * (n % 4096)
        yield b"</sheetData></worksheet>"
    return workbook({"Sheet1": gen()}, level=9)


# --- byte surgery on finished zips ---------------------------------------------------

def _central_entries(data: bytes):
    """(offset of central entry, name) for each entry."""
    end = data.rfind(b"PK\x05\x06")
    _, _, _, _, count, _size, start, _ = struct.unpack("<4s4H2LH", data[end:end + 22])
    pos, out = start, []
    for _ in range(count):
        nlen, xlen, clen = struct.unpack("<3H", data[pos + 28:pos + 34])
        out.append((pos, data[pos + 46:pos + 46 + nlen].decode()))
        pos += 46 + nlen + xlen + clen
    return out


def patch_declared_size(data: bytes, member: str, new_size: int) -> bytes:
    """Make the zip directory (and local header) lie about a part's unpacked size."""
    b = bytearray(data)
    for pos, name in _central_entries(data):
        if name == member:
            struct.pack_into("<L", b, pos + 24, new_size)
            local = struct.unpack("<L", b[pos + 42:pos + 46])[0]
            struct.pack_into("<L", b, local + 22, new_size)
            return bytes(b)
    raise KeyError(member)


def patch_flag(data: bytes, member: str, bit: int) -> bytes:
    b = bytearray(data)
    for pos, name in _central_entries(data):
        if name == member:
            flags = struct.unpack("<H", b[pos + 8:pos + 10])[0] | bit
            struct.pack_into("<H", b, pos + 8, flags)
            local = struct.unpack("<L", b[pos + 42:pos + 46])[0]
            struct.pack_into("<H", b, local + 6, flags)
            return bytes(b)
    raise KeyError(member)


def alias_member(data: bytes, member: str, alias_of: str) -> bytes:
    """Point ``member``'s directory entry at ``alias_of``'s data (overlapping parts)."""
    b = bytearray(data)
    entries = dict((name, pos) for pos, name in _central_entries(data))
    src = entries[alias_of]
    dst = entries[member]
    for off, size in ((10, 2), (16, 4), (20, 4), (24, 4), (42, 4)):  # method..sizes, offset
        b[dst + off:dst + off + size] = b[src + off:src + off + size]
    return bytes(b)
