"""Baseline: a plain pandas + Great Expectations ingest of canonical CSV files.

    python -m benchmarks.scenarios.pandas_gx_baseline DB CONTRACTS_DIR AS_OF CSV [CSV...]

What a competent analyst would write without Tandem: read each file with pandas, parse
the types, validate with GX 1.x on the pandas frame with roughly the rules of
``data_contracts/rules.yaml`` (required fields; clinic, instrument and therapist roster
in their sets; session date a date within the clinic's service; item numbers and scores
within each instrument's ranges; one answer per client, instrument, session and item),
drop the failing rows and append the rest to a DuckDB table. No pseudonyms, no lineage,
no quarantine, no batch records: it is the floor Tandem's extra work is measured over.
Prints {"rows_in": N, "rows_loaded": M, "rows_failed": K}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import duckdb
import pandas as pd
import yaml

COLUMNS = ["clinic_id", "client_id", "therapist_id", "session_date", "session_number",
           "instrument", "item", "score"]


def _instruments(repo: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((repo / "data_contracts" / "instruments").glob("*.yaml")):
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
        out[d["code"]] = d
    return out


def _suite(gx, contract: dict, instruments: dict[str, dict], as_of: str):  # noqa: ANN001
    e = gx.expectations
    suite = gx.ExpectationSuite(name=f"baseline-{contract['clinic_id']}")
    for col in COLUMNS:
        suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column=col))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(
        column="clinic_id", value_set=[contract["clinic_id"]]))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(
        column="instrument", value_set=list(contract["instruments"])))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(
        column="therapist_id", value_set=list(contract["therapists"])))
    suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column="session_date_parsed"))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(
        column="session_date_parsed", min_value=str(contract["started_on"]), max_value=as_of))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(
        column="session_number_int", min_value=1))
    for code in contract["instruments"]:
        inst = instruments.get(code)
        if inst is None:
            continue
        cond = f'instrument=="{code}"'
        suite.add_expectation(e.ExpectColumnValuesToBeBetween(
            column="item_int", min_value=1, max_value=len(inst["items"]),
            row_condition=cond, condition_parser="pandas"))
        suite.add_expectation(e.ExpectColumnValuesToBeBetween(
            column="score_num", min_value=inst["item_range"]["min"],
            max_value=inst["item_range"]["max"], row_condition=cond, condition_parser="pandas"))
    suite.add_expectation(e.ExpectCompoundColumnsToBeUnique(
        column_list=["clinic_id", "client_id", "instrument", "session_number_int", "item_int"]))
    return suite


def _read(path: Path, encoding: str) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
    for col in COLUMNS:
        df[col] = df[col].str.strip().replace("", None)
    df["session_date_parsed"] = pd.to_datetime(df["session_date"], format="%Y-%m-%d",
                                               errors="coerce")
    df["session_number_int"] = pd.to_numeric(df["session_number"], errors="coerce")
    df["item_int"] = pd.to_numeric(df["item"], errors="coerce")
    df["score_num"] = pd.to_numeric(df["score"], errors="coerce")
    return df


def main(argv: list[str]) -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    db, contracts_dir, as_of = Path(argv[0]), Path(argv[1]), argv[2]
    paths = [Path(p) for p in argv[3:]]
    repo = Path(__file__).resolve().parents[2]
    instruments = _instruments(repo)
    contracts = {}
    for p in sorted(contracts_dir.glob("*.yaml")):
        c = yaml.safe_load(p.read_text(encoding="utf-8"))
        contracts[c["clinic_id"]] = c

    context = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False,
                                                         metric_calculations=False)
    asset = context.data_sources.add_pandas("files").add_dataframe_asset("rows")
    batch = asset.add_batch_definition_whole_dataframe("whole")
    definitions: dict[str, object] = {}
    con = duckdb.connect(str(db))
    rows_in = rows_loaded = 0
    for path in paths:
        clinic = pd.read_csv(path, dtype=str, nrows=1)["clinic_id"].iloc[0].strip()
        contract = contracts[clinic]
        df = _read(path, contract.get("encoding", "utf-8"))
        if clinic not in definitions:
            suite = context.suites.add(_suite(gx, contract, instruments, as_of))
            definitions[clinic] = context.validation_definitions.add(
                gx.ValidationDefinition(name=f"v-{clinic}", data=batch, suite=suite))
        result = definitions[clinic].run(  # type: ignore[attr-defined]
            batch_parameters={"dataframe": df}, result_format={"result_format": "COMPLETE"})
        bad: set[int] = set()
        for res in result.results:
            bad.update(res.result.get("unexpected_index_list") or [])
        good = df.drop(index=list(bad))[COLUMNS].assign(
            session_date=lambda d: pd.to_datetime(d["session_date"]).dt.date,
            session_number=lambda d: d["session_number"].astype(int),
            item=lambda d: d["item"].astype(int),
            score=lambda d: d["score"].astype(float),
        )
        con.register("_good", good)
        con.execute("CREATE TABLE IF NOT EXISTS response AS SELECT * FROM _good LIMIT 0")
        con.execute("INSERT INTO response SELECT * FROM _good")
        con.unregister("_good")
        rows_in += len(df)
        rows_loaded += len(good)
    con.close()
    print(json.dumps({"rows_in": rows_in, "rows_loaded": rows_loaded,
                      "rows_failed": rows_in - rows_loaded}))


if __name__ == "__main__":
    main(sys.argv[1:])
