"""Export episode outcomes from the published snapshot to CSV (for quality teams).

Reads the row-level mart ``episode_outcome`` (built by transforms.marts) from a DuckDB
connection to the published marts file: one row per episode and outcome measure, plus an
``NHS_TT`` row per episode with PHQ-9 and GAD-7. Booleans are written as true/false.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from transforms.marts import EXPORT_COLUMNS

MART = "episode_outcome"


def export_episodes(snapshot_con: duckdb.DuckDBPyConnection, out: Path) -> int:
    """Write ``episode_outcome`` to ``out`` as CSV; return the number of rows written."""
    frame = pl.from_arrow(snapshot_con.execute(
        f'SELECT * FROM "{MART}" ORDER BY episode_id, instrument'  # noqa: S608 - constant
    ).to_arrow_table())
    cols = [c for c in EXPORT_COLUMNS if c in frame.columns]
    frame = frame.select(cols).with_columns(
        pl.col(c).cast(pl.String).str.to_lowercase()
        for c in cols
        if frame.schema[c] == pl.Boolean
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    frame.write_csv(tmp, date_format="%Y-%m-%d")
    tmp.replace(out)
    return frame.height
