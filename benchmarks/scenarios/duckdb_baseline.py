"""Baseline: DuckDB reading the same files into tables of a new database file.

    python -m benchmarks.scenarios.duckdb_baseline DB FILE [FILE...]

As issue 15 sets it: CSV files (canonical and REDCap) with ``read_csv``, FHIR NDJSON with
``read_json``, and Excel workbooks with the Excel reader Tandem uses (fastexcel: every sheet
to Arrow, inserted into DuckDB). Files of one folder and one format are read by one call
into one table (one clinic: one layout). Table names are generated
(``t0``, ``t1`` ...), never taken from input. ``union_by_name`` is not needed and costs about 4x
over 2,000 files (it sniffs every file). Prints {"rows": N, "tables": K, "files": {...}}.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import duckdb

CSV = {".csv"}
NDJSON = {".ndjson", ".jsonl", ".json"}
EXCEL = {".xlsx"}


def _excel(con: duckdb.DuckDBPyConnection, table: str, files: list[str]) -> None:
    """Every sheet of every workbook, as strings (Tandem reads them so), into one table."""
    import fastexcel

    created = False
    for path in files:
        book = fastexcel.read_excel(path)
        for name in book.sheet_names:
            sheet = book.load_sheet(name, header_row=None, dtypes="string").to_arrow()
            if sheet.num_rows == 0:
                continue
            con.register("sheet", sheet)
            if not created:
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM sheet")  # noqa: S608 - generated table names
                created = True
            else:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM sheet")  # noqa: S608 - generated table names
            con.unregister("sheet")
    if not created:
        con.execute(f"CREATE TABLE {table} (empty INTEGER)")


def main(argv: list[str]) -> None:
    db, paths = Path(argv[0]), [Path(p) for p in argv[1:]]
    groups: dict[tuple[Path, str], list[str]] = defaultdict(list)
    for p in paths:
        groups[p.parent, p.suffix.lower()].append(str(p))
    con = duckdb.connect(str(db))
    con.execute("SET enable_progress_bar = false")
    rows = 0
    kinds: Counter[str] = Counter()
    for i, ((_, suffix), files) in enumerate(groups.items()):
        table = f"t{i}"
        kinds[suffix] += len(files)
        if suffix in CSV:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv(?)",  # noqa: S608 - generated table names
                        [files])
        elif suffix in NDJSON:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM "  # noqa: S608 - generated table names
                        "read_json(?, format = 'newline_delimited')", [files])
        elif suffix in EXCEL:
            _excel(con, table, files)
        else:
            raise SystemExit(f"no baseline reader for {suffix} files")
        rows += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - generated table names
    con.close()
    print(json.dumps({"rows": rows, "tables": len(groups), "files": dict(kinds)}))


if __name__ == "__main__":
    main(sys.argv[1:])
