"""Every published table against its contract, ``data_contracts/marts/<table>.yaml``.

One snapshot is built per module through the real pipeline (generated files -> ingest ->
aggregate -> publish). Each table's columns and DuckDB types must equal its contract's, in
order; its key must be unique (null grouping columns count as values: "all"); columns not
marked nullable hold no null; accepted values and ranges hold; suppressed marts null their
counts exactly on suppressed cells. Every published table has a contract, and every contract
not marked ``optional`` is published. docs/marts.md is generated from the contracts.

The last tests break a contract on purpose and expect each check to notice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import pytest
import yaml

from tandem.core import published
from tandem.core.contracts import (
    Instrument,
    MartColumn,
    MartContract,
    MartRange,
    load_instruments,
    load_mart_contracts,
    render_markdown,
)
from tandem.core.settings import Settings, shipped_contracts_dir
from tandem.pipeline.aggregate import run_aggregate
from tandem.pipeline.ingest import IngestRun, process_files
from tests.conftest import REPO_ROOT
from tests.synth_support import as_of, generate_small, install_contracts

# The generated data set has ~30 clients: with the default of 10 nearly every director cell
# would be suppressed, so the figures' values and ranges would go unchecked. With 3 the
# snapshot has both suppressed and shown cells.
MIN_CELL_SIZE = 3
# Tables of the snapshot that are not marts: its own key/value description.
SNAPSHOT_METADATA = frozenset({"publish_info", "publication"})

CONTRACT_FILES = sorted((shipped_contracts_dir() / "marts").glob("*.yaml"))
MART_NAMES = [p.stem for p in CONTRACT_FILES]


def _declared(flag: str) -> list[str]:
    """Names whose YAML sets ``flag`` (read leniently: collection must not fail on a bad file;
    test_contracts_load reports that)."""
    out = []
    for path in CONTRACT_FILES:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and data.get(flag):
            out.append(path.stem)
    return out


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class Published:
    con: duckdb.DuckDBPyConnection
    tables: frozenset[str]
    instruments: dict[str, Instrument]
    min_cell_size: int


@pytest.fixture(scope="module")
def contracts() -> dict[str, MartContract]:
    return load_mart_contracts(Settings(contracts_dir=shipped_contracts_dir()))


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    root = tmp_path_factory.mktemp("mart_contracts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TANDEM_HOME", str(root / "home"))
        mp.setenv("TANDEM_PSEUDONYM_KEY", "test-only-key")
        mp.setenv("TANDEM_MIN_CELL_SIZE", str(MIN_CELL_SIZE))
        settings = Settings()
        settings.ensure_dirs()
        gen = root / "gen"
        manifest = generate_small(gen, row_scale=3.0)
        install_contracts(gen, settings)
        files = sorted((gen / "files").rglob("*.*"))
        process_files(files, IngestRun.load(settings, as_of=as_of(manifest)))
        info = run_aggregate(settings, as_of(manifest))
        instruments = load_instruments(settings)
        snap = published.current(settings)
        assert snap is not None and snap.snapshot_id == info["snapshot_id"]
        con = published.open_snapshot(snap, settings)
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'marts'").fetchall()}
    assert set(info["tables"]) <= tables
    try:
        yield Published(con, frozenset(tables - SNAPSHOT_METADATA), instruments,
                        settings.min_cell_size)
    finally:
        con.close()


# --- the checks: each returns what is wrong, one readable line per problem ------------------


def schema_violations(contract: MartContract, snap: Published) -> list[str]:
    """Column names and DuckDB types equal the contract's exactly, in order."""
    name = contract.name
    actual = [(r[0], r[1]) for r in snap.con.execute(f"DESCRIBE {_q(name)}").fetchall()]  # noqa: S608 - a table name from the contracts, quoted
    expected = [(n, col.type) for col in contract.columns for n in col.names(snap.instruments)]
    if actual == expected:
        return []
    have, want = dict(actual), dict(expected)
    out = [f"{name}.{c}: published but not in the contract ({t})"
           for c, t in actual if c not in want]
    out += [f"{name}.{c}: in the contract ({t}) but not published" for c, t in expected
            if c not in have]
    out += [f"{name}.{c}: published as {have[c]}, the contract says {t}" for c, t in expected
            if c in have and have[c] != t]
    if not out:
        out.append(f"{name}: columns in another order: published {[c for c, _ in actual]}, "
                   f"contract {[c for c, _ in expected]}")
    return out


def key_violations(contract: MartContract, snap: Published) -> list[str]:
    """No two rows share the key (GROUP BY groups nulls together: null = "all" is a value)."""
    if not contract.key:
        return []
    cols = ", ".join(_q(k) for k in contract.key)
    dups = snap.con.execute(
        f"SELECT {cols}, count(*) AS n FROM {_q(contract.name)} GROUP BY ALL "  # noqa: S608 - identifiers from the contracts, quoted
        "HAVING count(*) > 1 ORDER BY n DESC LIMIT 5").fetchall()
    total = snap.con.execute(
        f"SELECT count(*) FROM (SELECT {cols} FROM {_q(contract.name)} GROUP BY ALL "  # noqa: S608 - identifiers from the contracts, quoted
        "HAVING count(*) > 1)").fetchone()[0]
    if not dups:
        return []
    examples = "; ".join(f"{dict(zip(contract.key, r[:-1], strict=True))} x{r[-1]}"
                         for r in dups)
    return [f"{contract.name}: key {contract.key} is not unique: {total} values repeat, "
            f"e.g. {examples}"]


def null_violations(contract: MartContract, snap: Published) -> list[str]:
    """Columns the contract says are never null have no null."""
    out = []
    for col in contract.columns:
        if col.nullable:
            continue
        for name in col.names(snap.instruments):
            n = snap.con.execute(
                f"SELECT count(*) FROM {_q(contract.name)} WHERE {_q(name)} IS NULL"  # noqa: S608 - identifiers from the contracts, quoted
            ).fetchone()[0]
            if n:
                out.append(f"{contract.name}.{name}: {n} null values, the contract says "
                           "nullable: false")
    return out


def value_violations(contract: MartContract, snap: Published) -> list[str]:
    """Accepted values and ranges hold; a DOUBLE is a number or null, never NaN or infinite."""
    out = []
    table = _q(contract.name)
    for col in contract.columns:
        allowed = col.allowed_values(snap.instruments)
        for name in col.names(snap.instruments):
            c = _q(name)
            if allowed is not None:
                seen = {r[0] for r in snap.con.execute(
                    f"SELECT DISTINCT {c} FROM {table} WHERE {c} IS NOT NULL").fetchall()}  # noqa: S608 - identifiers from the contracts, quoted
                if bad := seen - allowed:
                    out.append(f"{contract.name}.{name}: values {sorted(map(str, bad))} are not "
                               f"accepted (accepted: {sorted(map(str, allowed))})")
            if col.type == "DOUBLE":
                n = snap.con.execute(
                    f"SELECT count(*) FROM {table} WHERE isnan({c}) OR isinf({c})"  # noqa: S608 - identifiers from the contracts, quoted
                ).fetchone()[0]
                if n:
                    out.append(f"{contract.name}.{name}: {n} NaN or infinite values (a figure "
                               "that cannot be computed is null)")
            if col.range is not None:
                lo, hi = snap.con.execute(
                    f"SELECT min({c}), max({c}) FROM {table} "  # noqa: S608 - identifiers from the contracts, quoted
                    f"WHERE NOT (isnan({c}::DOUBLE) OR isinf({c}::DOUBLE))").fetchone()
                r = col.range
                if lo is not None and r.min is not None and lo < r.min - 1e-9:
                    out.append(f"{contract.name}.{name}: minimum {lo} is below {r.min:g}")
                if hi is not None and r.max is not None and hi > r.max + 1e-9:
                    out.append(f"{contract.name}.{name}: maximum {hi} is above {r.max:g}")
    return out


def suppression_violations(contract: MartContract, snap: Published) -> list[str]:
    """A suppressed cell has no client count; a shown one has at least min_cell_size."""
    if not contract.suppressed:
        return []
    table = _q(contract.name)
    wrong = snap.con.execute(
        f"SELECT count(*) FILTER (WHERE suppressed AND n_clients IS NOT NULL), "  # noqa: S608 - a table name from the contracts, quoted
        f"count(*) FILTER (WHERE NOT suppressed AND n_clients IS NULL), "
        f"count(*) FILTER (WHERE NOT suppressed AND n_clients < ?) FROM {table}",
        [snap.min_cell_size]).fetchone()
    labels = ("suppressed rows with a client count", "shown rows without a client count",
              f"shown rows with fewer than {snap.min_cell_size} clients")
    return [f"{contract.name}: {n} {label}" for n, label in zip(wrong, labels, strict=True) if n]


def coverage_violations(contracts: dict[str, MartContract], tables: frozenset[str]) -> list[str]:
    """Every published table has a contract; every contract not optional is published."""
    out = [f"{t}: published without a contract (add data_contracts/marts/{t}.yaml)"
           for t in sorted(tables - set(contracts))]
    out += [f"{n}: has a contract but is not published" for n, c in sorted(contracts.items())
            if n not in tables and not c.optional]
    return out


def _published(contract: MartContract, snap: Published) -> None:
    if contract.name not in snap.tables:
        if contract.optional:
            pytest.skip(f"{contract.name} is optional (published when "
                        f"{contract.published_when}) and this snapshot has none")
        pytest.fail(f"{contract.name} is not published")


def _report(problems: list[str]) -> str:
    return "\n".join(["the published table breaks its contract:", *problems])


# --- the contracts themselves -------------------------------------------------------------


def test_contracts_load():
    assert CONTRACT_FILES, "no mart contracts in data_contracts/marts/"
    loaded = load_mart_contracts(Settings(contracts_dir=shipped_contracts_dir()))
    assert sorted(loaded) == MART_NAMES
    instruments = load_instruments(Settings(contracts_dir=shipped_contracts_dir()))
    for contract in loaded.values():
        names = contract.column_names(instruments)  # patterns expand with shipped instruments
        assert len(names) == len(set(names)), f"{contract.name}: a column twice"
        for col in contract.columns:
            col.allowed_values(instruments)  # the instruments it names exist


def test_a_contract_is_data_validated_on_load(tmp_path):
    (tmp_path / "marts").mkdir()
    good = yaml.safe_load((shipped_contracts_dir() / "marts" / "dir_off_track.yaml").read_text(
        encoding="utf-8"))
    bad = {**good, "name": "dir_other"}
    (tmp_path / "marts" / "dir_off_track.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="does not match the file name"):
        load_mart_contracts(Settings(contracts_dir=tmp_path))
    bad = {**good, "key": ["clinic_id", "no_such_column"]}
    (tmp_path / "marts" / "dir_off_track.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="no_such_column"):
        load_mart_contracts(Settings(contracts_dir=tmp_path))
    bad = {**good, "suppressed": False}
    (tmp_path / "marts" / "dir_off_track.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="suppressed"):
        load_mart_contracts(Settings(contracts_dir=tmp_path))


def test_docs_page_is_generated_from_the_contracts(contracts):
    page = REPO_ROOT / "docs" / "marts.md"
    assert page.read_text(encoding="utf-8") == render_markdown(contracts), (
        "docs/marts.md differs from the mart contracts: run `python -m tandem.app.marts_doc` "
        "(from the repository root) and commit the page")


# --- the snapshot against the contracts ---------------------------------------------------


def test_every_published_table_has_a_contract_and_every_contract_is_published(
        contracts, snapshot):
    assert coverage_violations(contracts, snapshot.tables) == []


@pytest.mark.parametrize("name", MART_NAMES)
def test_columns_and_types(name, contracts, snapshot):
    _published(contracts[name], snapshot)
    assert (problems := schema_violations(contracts[name], snapshot)) == [], _report(problems)


@pytest.mark.parametrize("name", MART_NAMES)
def test_key_is_unique(name, contracts, snapshot):
    _published(contracts[name], snapshot)
    assert (problems := key_violations(contracts[name], snapshot)) == [], _report(problems)


@pytest.mark.parametrize("name", MART_NAMES)
def test_not_nullable_columns_have_no_nulls(name, contracts, snapshot):
    _published(contracts[name], snapshot)
    assert (problems := null_violations(contracts[name], snapshot)) == [], _report(problems)


@pytest.mark.parametrize("name", MART_NAMES)
def test_accepted_values_and_ranges(name, contracts, snapshot):
    _published(contracts[name], snapshot)
    assert (problems := value_violations(contracts[name], snapshot)) == [], _report(problems)


@pytest.mark.parametrize("name", _declared("suppressed"))
def test_suppressed_cells_have_no_client_count(name, contracts, snapshot):
    _published(contracts[name], snapshot)
    assert (problems := suppression_violations(contracts[name], snapshot)) == [], (
        _report(problems))


@pytest.mark.parametrize("name", _declared("alias_of"))
def test_an_alias_holds_the_same_rows(name, contracts, snapshot):
    contract = contracts[name]
    _published(contract, snapshot)
    a, b = _q(name), _q(str(contract.alias_of))
    differ = snapshot.con.execute(
        f"SELECT count(*) FROM ((SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) "  # noqa: S608 - table names from the contracts, quoted
        f"UNION ALL (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a}))").fetchone()[0]
    assert differ == 0, f"{name}: {differ} rows differ from {contract.alias_of}"


def test_the_snapshot_has_shown_and_suppressed_cells(snapshot):
    """The checks above saw figures, not only nulls (MIN_CELL_SIZE is small enough)."""
    shown, hidden = snapshot.con.execute(
        "SELECT count(*) FILTER (WHERE NOT suppressed), count(*) FILTER (WHERE suppressed) "
        "FROM dir_outcomes").fetchone()
    assert shown > 0 and hidden > 0


# --- every check can fail -----------------------------------------------------------------


def _column(contract: MartContract, name: str) -> MartColumn:
    return next(c for c in contract.columns if c.name == name)


def _with_column(contract: MartContract, name: str, **changes) -> MartContract:
    cols = [c.model_copy(update=changes) if c.name == name else c for c in contract.columns]
    return contract.model_copy(update={"columns": cols})


def test_each_check_notices_a_broken_contract(contracts, snapshot):
    outcomes = contracts["dir_outcomes"]
    assert schema_violations(outcomes, snapshot) == []

    wrong_type = _with_column(outcomes, "n", type="BIGINT")
    assert any("dir_outcomes.n: published as UINTEGER" in p
               for p in schema_violations(wrong_type, snapshot))
    missing = outcomes.model_copy(update={"columns": [c for c in outcomes.columns
                                                      if c.name != "improved"]})
    assert any("dir_outcomes.improved: published but not in the contract" in p
               for p in schema_violations(missing, snapshot))
    swapped = outcomes.model_copy(update={"columns": [outcomes.columns[1], outcomes.columns[0],
                                                      *outcomes.columns[2:]]})
    assert any("another order" in p for p in schema_violations(swapped, snapshot))

    short_key = outcomes.model_copy(update={"key": ["clinic_id", "instrument"]})
    assert any("is not unique" in p for p in key_violations(short_key, snapshot))

    not_null = _with_column(outcomes, "clinic_id", nullable=False)
    assert any("dir_outcomes.clinic_id" in p for p in null_violations(not_null, snapshot))

    funnel = contracts["dir_funnel"]
    fewer = _with_column(funnel, "period", accepted_values=["all", "month"])
    assert any("dir_funnel.period: values" in p for p in value_violations(fewer, snapshot))
    measure = contracts["episode_measure"]
    assert value_violations(measure, snapshot) == []
    narrow = _with_column(measure, "sessions", range=MartRange(min=1, max=1))
    assert any("episode_measure.sessions: maximum" in p
               for p in value_violations(narrow, snapshot))
    no_items = _with_column(contracts["dir_practice_use"], "practice", accepted_item_names_of=None)
    assert any("dir_practice_use.practice" in p for p in value_violations(no_items, snapshot))

    strict = Published(snapshot.con, snapshot.tables, snapshot.instruments, 10**6)
    assert any("fewer than" in p for p in suppression_violations(outcomes, strict))

    unlisted = {n: c for n, c in contracts.items() if n != "dir_activity"}
    assert coverage_violations(unlisted, snapshot.tables) == [
        "dir_activity: published without a contract (add data_contracts/marts/dir_activity.yaml)"]
    assert coverage_violations(contracts, snapshot.tables - {"dir_outcomes"}) == [
        "dir_outcomes: has a contract but is not published"]
    assert coverage_violations(contracts, snapshot.tables - {"dir_nhs_talking_therapies"}) == []


def test_a_pattern_column_follows_the_instrument_items(contracts, snapshot):
    col = next(c for c in contracts["episode_measure"].columns if c.pattern)
    items = snapshot.instruments[str(col.items_of)].items
    assert col.names(snapshot.instruments) == [f"practice_{i.name}" for i in items]
    fewer = dict(snapshot.instruments)
    fewer[str(col.items_of)] = fewer[str(col.items_of)].model_copy(update={"items": items[:-1]})
    changed = Published(snapshot.con, snapshot.tables, fewer, snapshot.min_cell_size)
    assert any("published but not in the contract" in p
               for p in schema_violations(contracts["episode_measure"], changed))


def test_the_page_renders_every_column(contracts):
    page = render_markdown(contracts)
    for contract in contracts.values():
        assert f"### `{contract.name}`" in page
        if contract.alias_of is None:
            for col in contract.columns:
                assert f"| `{col.label}`" in page
