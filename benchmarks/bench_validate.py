"""The data contract's cost, before and after it was compiled to Polars.

    python -m benchmarks.bench_validate [--rows 1000000] [--small 400] [--repeat 3]

Makes a canonical CSV (ORS administrations, about 1 % of rows faulty: an unknown therapist,
an item score out of range, a missing score), reads and stages it as the ingest does, and
times, in the same process:

* DuckDB ``read_csv`` of the same CSV into an in-memory table (the baseline);
* before: the GX suite on every row (pandas hand-over included), as the ingest ran it
  (``tests/quality/gx_reference.py``, kept as the reference);
* after: the compiled Polars pass (``check_many``: what decides the quarantine), and GX
  confirming it on the failing rows (the report, written after the load commits);
* the GX import and context (paid once per process, in a background thread).

Prints one JSON object; benchmarks/NOTES.md keeps the numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl

from tandem.core.contracts import ClinicContract, load_instruments
from tandem.core.settings import Settings
from tandem.pipeline.sources import reader_for, split_notes
from transforms.staging import add_contract_columns, split_exact_duplicates, stage_rows

AS_OF = dt.date(2025, 6, 30)
HEADER = "clinic_id,client_id,therapist_id,session_date,session_number,instrument,item,score\n"


def _contract() -> ClinicContract:
    return ClinicContract(clinic_id="northside", name="Northside", format="canonical_csv",
                          started_on=dt.date(2024, 1, 1), instruments=["ORS", "SRS"],
                          therapists=["T01", "T02"])


def make_csv(path: Path, rows: int) -> None:
    """``rows`` item rows: ORS administrations of 4 items; every 100th administration has
    one fault (rotating: unknown therapist, score 11, missing score)."""
    admins = rows // 4
    a = pl.DataFrame({"a": range(admins)}, schema={"a": pl.Int64})
    fault = pl.when(pl.col("a") % 100 == 0).then(pl.col("a") // 100 % 3).otherwise(-1)
    a = a.with_columns(
        clinic_id=pl.lit("northside"),
        client_id=pl.format("C{}", pl.col("a") // 10),
        therapist_id=pl.when(fault == 0).then(pl.lit("T09")).otherwise(pl.lit("T01")),
        session_date=(pl.lit(dt.date(2024, 2, 1)) + pl.duration(days=pl.col("a") % 400))
        .dt.strftime("%Y-%m-%d"),
        session_number=(pl.col("a") % 10 + 1).cast(pl.String),
        instrument=pl.lit("ORS"), _fault=fault,
    )
    items = a.join(pl.DataFrame({"item": [1, 2, 3, 4]}), how="cross").with_columns(
        score=pl.when((pl.col("_fault") == 1) & (pl.col("item") == 2)).then(pl.lit("11"))
        .when((pl.col("_fault") == 2) & (pl.col("item") == 3)).then(pl.lit(""))
        .otherwise(((pl.col("a") + pl.col("item")) % 10).cast(pl.String)),
        item=pl.col("item").cast(pl.String))
    items.select("clinic_id", "client_id", "therapist_id", "session_date", "session_number",
                 "instrument", "item", "score").write_csv(path)


def staged(path: Path) -> pl.DataFrame:
    con = _contract()
    raw, _ = split_notes(reader_for("canonical_csv")(path.read_bytes(), con, path.name))
    frame = stage_rows(raw.rename({"client_id": "client_key"}), con.date_format)
    unique, _ = split_exact_duplicates(frame)
    return add_contract_columns(unique, load_instruments(Settings()))


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(rows: int, repeat: int, workdir: Path) -> dict:
    from tandem.quality.compiled_rules import rule_columns
    from tandem.quality.contract import check_many
    from tandem.quality.rules import add_contract_values, build_rule_specs, load_rules
    from tests.quality.gx_reference import ReferenceSuite

    csv = workdir / f"rows-{rows}.csv"
    make_csv(csv, rows)
    frame = staged(csv)
    settings, instruments = Settings(), load_instruments(Settings())
    batches = [(frame, _contract())]

    def duck() -> None:
        con = duckdb.connect()
        con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?)", [str(csv)])
        con.close()

    outcome = None

    def compiled() -> None:
        nonlocal outcome
        [outcome] = check_many(batches, instruments, AS_OF, settings.rules_path)

    def confirm() -> None:
        [o] = check_many(batches, instruments, AS_OF, settings.rules_path)
        _ = o.result_json

    specs = build_rule_specs(load_rules(settings.rules_path), _contract(), instruments, AS_OF)
    reference = ReferenceSuite()
    gx_frame = add_contract_values(frame, _contract(), AS_OF).select(rule_columns(specs))

    def before() -> None:
        reference.unexpected(gx_frame, specs)

    confirm()  # the suites' first runs build them and GX's metric registry: not the
    before()  # per-batch cost
    out = {"rows": frame.height, "duckdb_read_csv_s": _best(duck, repeat),
           "before_gx_every_row_s": _best(before, repeat),
           "after_compiled_polars_s": _best(compiled, repeat)}
    out["after_gx_confirm_failing_rows_s"] = _best(confirm, repeat) - out["after_compiled_polars_s"]
    assert outcome is not None
    out["rows_failing"] = outcome.failures["row_id"].n_unique()
    out["ratio_before_to_duckdb"] = out["before_gx_every_row_s"] / out["duckdb_read_csv_s"]
    out["ratio_after_to_duckdb"] = out["after_compiled_polars_s"] / out["duckdb_read_csv_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    t = time.perf_counter()
    from tandem.quality.gx_runner import get_validator

    get_validator()
    result = {"gx_import_and_context_s": time.perf_counter() - t}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.rows):
            result[str(n)] = measure(n, args.repeat, Path(tmp))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
