"""Baseline: DuckDB ``read_csv`` of CSV files into a table of a new database file.

    python -m benchmarks.scenarios.duckdb_baseline DB CSV [CSV...]

The files of one folder (one clinic: one header) are read by one ``read_csv`` call into
one table per folder. (``union_by_name`` is not needed and costs about 4x over 2,000
files: it sniffs every file.) Prints {"rows": N, "tables": K}.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import duckdb


def main(argv: list[str]) -> None:
    db, paths = Path(argv[0]), [Path(p) for p in argv[1:]]
    groups: dict[Path, list[str]] = defaultdict(list)
    for p in paths:
        groups[p.parent].append(str(p))
    con = duckdb.connect(str(db))
    con.execute("SET enable_progress_bar = false")
    rows = 0
    for i, files in enumerate(groups.values()):
        con.execute(
            f"CREATE TABLE t{i} AS SELECT * FROM read_csv(?)",  # noqa: S608 - generated table names
            [files],
        )
        rows += con.execute(f"SELECT count(*) FROM t{i}").fetchone()[0]  # noqa: S608 - generated table names
    con.close()
    print(json.dumps({"rows": rows, "tables": len(groups)}))


if __name__ == "__main__":
    main(sys.argv[1:])
