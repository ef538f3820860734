"""Answers already loaded, looked up once per chunk of files instead of once per file.

Every candidate row of a batch is checked against the answers already in the warehouse:
an identical answer is a duplicate, a different one a conflict. Asking DuckDB per file
scans ``response`` once per file, so a back-fill of thousands of daily files grew with
the square of its size. Instead, one query per chunk fetches the loaded answers that any
file of the chunk also carries; answers that appear in two files of the chunk are
tracked as the chunk loads them. A file's check then only touches its *contested* keys
(in the warehouse already, or in another file of the chunk), usually none, and gives
exactly what the per-file query gave had the files been loaded one after another.
"""

from __future__ import annotations

import duckdb
import polars as pl

from tandem.core import warehouse
from transforms.staging import ANSWER_KEY, ROW_ID

_KEY_SCHEMA = {"clinic_id": pl.String, "client_key": pl.String, "instrument": pl.String,
               "session_number_int": pl.Int32, "kind": pl.String, "item_int": pl.Int16}
_POOL_SCHEMA = {**_KEY_SCHEMA, "loaded": pl.Float64, "batch_id": pl.Int64}
CLASH_SCHEMA = {ROW_ID: pl.Int64, "loaded": pl.Float64, "batch_id": pl.Int64,
                "instrument": pl.String, "what": pl.String, "what_value": pl.String,
                "score_num": pl.Float64}


def _typed_keys() -> list[pl.Expr]:
    """The key columns in one type whichever reader or query they came from (joins need it)."""
    return [pl.col(c).cast(t) for c, t in _KEY_SCHEMA.items()]


class LoadedAnswers:
    """The loaded answers a chunk of files may clash with, kept current as it loads."""

    def __init__(self, con: duckdb.DuckDBPyConnection, files: list[pl.DataFrame]) -> None:
        """``files``: each file's rows that may load (staged, with ANSWER_KEY columns)."""
        keyed = [f.select(_typed_keys()).with_columns(_file=pl.lit(i, pl.Int32))
                 for i, f in enumerate(files) if f.height]
        self._con = con
        self._pool = pl.DataFrame(schema=_POOL_SCHEMA)
        self._deleted: set[int] = set()
        self._chunk_rows: dict[int, int] = {}  # rows loaded by batches of this chunk
        if not keyed:
            self._contested = pl.DataFrame(schema=_KEY_SCHEMA)
            return
        every = pl.concat(keyed)
        self._pool = self._fetch(con, every.select(ANSWER_KEY))
        parts = [self._pool.select(ANSWER_KEY)]
        if len(keyed) > 1:  # keys that two files of the chunk carry
            parts.append(every.unique([*ANSWER_KEY, "_file"]).group_by(ANSWER_KEY).len()
                         .filter(pl.col("len") > 1).select(ANSWER_KEY))
        self._contested = pl.concat(parts).unique()

    @staticmethod
    def _fetch(con: duckdb.DuckDBPyConnection, keys: pl.DataFrame) -> pl.DataFrame:
        """The warehouse's answers (items and reported totals) with any of these keys."""
        with warehouse.registered(con, "_chunk_keys", keys):
            found = warehouse.query_frame(
                con,
                """
                SELECT k.clinic_id, k.client_key, k.instrument, k.session_number_int,
                       k.kind, k.item_int, r.score AS loaded, r.batch_id
                FROM _chunk_keys k JOIN response r
                  ON r.clinic_id = k.clinic_id AND r.client_key = k.client_key
                 AND r.instrument = k.instrument AND r.session_number = k.session_number_int
                 AND r.item = k.item_int
                WHERE k.kind = 'item'
                  AND r.clinic_id IN (SELECT DISTINCT clinic_id FROM _chunk_keys)
                UNION ALL
                SELECT k.clinic_id, k.client_key, k.instrument, k.session_number_int,
                       k.kind, k.item_int, t.total, t.batch_id
                FROM _chunk_keys k JOIN reported_total t
                  ON t.clinic_id = k.clinic_id AND t.client_key = k.client_key
                 AND t.instrument = k.instrument AND t.session_number = k.session_number_int
                WHERE k.kind = 'total'
                  AND t.clinic_id IN (SELECT DISTINCT clinic_id FROM _chunk_keys)
                """,
            )
        if found.is_empty():
            return pl.DataFrame(schema=_POOL_SCHEMA)
        # a key twice in the chunk matched twice: once is enough
        return found.select([pl.col(c).cast(t) for c, t in _POOL_SCHEMA.items()]).unique()

    def clash(self, candidates: pl.DataFrame, replaces: int | None) -> pl.DataFrame:
        """Candidate rows whose answer (or total) is loaded from another batch than
        ``replaces`` (the batch this file supersedes): as :data:`CLASH_SCHEMA`."""
        if self._contested.is_empty() or candidates.is_empty():
            return pl.DataFrame(schema=CLASH_SCHEMA)
        cand = candidates.select(*ANSWER_KEY, "score_num", ROW_ID).with_columns(_typed_keys())
        cand = cand.join(self._contested, on=ANSWER_KEY, how="semi", nulls_equal=True)
        gone = self._deleted | ({replaces} if replaces is not None else set())
        pool = self._pool.filter(~pl.col("batch_id").is_in(sorted(gone))) if gone else self._pool
        if cand.is_empty() or pool.is_empty():
            return pl.DataFrame(schema=CLASH_SCHEMA)
        hit = cand.join(pool, on=ANSWER_KEY, how="inner", nulls_equal=True)
        is_item = pl.col("kind") == "item"
        return hit.select(
            pl.col(ROW_ID).cast(pl.Int64),
            "loaded",
            "batch_id",
            "instrument",
            what=pl.when(is_item).then(pl.format("item {}", pl.col("item_int")))
            .otherwise(pl.lit("total")),
            what_value=pl.when(is_item).then(pl.lit("score")).otherwise(pl.lit("total")),
            score_num="score_num",
        ).cast(CLASH_SCHEMA)

    def forget(self, batch_ids: list[int]) -> None:
        """These batches leave the warehouse with the batch a file replaces (the reprocess
        batches of that batch): their answers no longer clash."""
        self._deleted.update(batch_ids)

    def rows_of(self, batch_id: int) -> int:
        """Answers and totals a batch loaded (it is about to be replaced)."""
        if batch_id in self._chunk_rows:
            return self._chunk_rows[batch_id]
        return int(self._con.execute(
            "SELECT (SELECT count(*) FROM response WHERE batch_id = $1)"
            " + (SELECT count(*) FROM reported_total WHERE batch_id = $1)",
            [batch_id]).fetchone()[0])

    def loaded(self, rows: pl.DataFrame, batch_id: int, replaces: int | None) -> None:
        """A file's rows are loaded as ``batch_id`` (``replaces`` leaves the warehouse)."""
        self._chunk_rows[batch_id] = rows.height
        if replaces is not None:
            self._deleted.add(replaces)
        if self._contested.is_empty() or rows.is_empty():
            return
        mine = rows.select(*ANSWER_KEY, pl.col("score_num").alias("loaded")).with_columns(
            *_typed_keys(), batch_id=pl.lit(batch_id, pl.Int64))
        mine = mine.join(self._contested, on=ANSWER_KEY, how="semi", nulls_equal=True)
        if mine.height:
            self._pool = pl.concat([self._pool, mine.select(list(_POOL_SCHEMA))])
