"""Small-cell suppression, the one place it happens for every director-facing mart.

**Primary.** A cell describing fewer than ``min_cell_size`` distinct clients (DOMAIN.md: 10,
configurable via settings ``min_cell_size``) could identify a client. Its figures are set to
null and ``suppressed`` is true, so a reader sees "suppressed", never a 0. The client count
itself is nulled too (a count of 3 is identifying); ``n_clients`` stays only for shown cells.

**Secondary (complementary).** Cells shown together are related by additive totals: the
all-clinics row is the sum of the clinic rows, a clinic's row the sum of its months (and of
its therapists), a year the sum of its quarters, n the sum of its categories (levels, bands).
Primary suppression alone can be undone by subtraction (all clinics minus the clinics shown).
So, per *family* of marts shown on one page or in one download (``FAMILIES``), every row is
placed in that structure and cells are added to the suppressed set until **no suppressed value
is determined by the shown ones**:

- linearly: a suppressed cell is determined when its value follows from the totals whatever
  the other suppressed cells hold (its coordinate vanishes on the null space of the relations
  restricted to suppressed cells): this protects counts and sums (means times n) alike;
- with non-negative counts: a suppressed count can also be pinned to 0 (e.g. two suppressed
  clinics whose recovered counts must add up to 0). Per count column, the suppressed cells
  that can be positive are found by linear programming; one that cannot, and is not 0 simply
  because a *shown* total covering it is 0 (that is public already), is determined; and
  with those public zeros known, the linear audit is repeated (a clinic's shown total minus
  its months that a shown zero made public gives away its last month).

For each determined cell one more cell of a relation it is in is suppressed: preferably a
sibling rather than a total, with a positive count where a zero was pinned, the one with the
fewest clients. The audit is repeated until nothing is determined. The test
(tests/transforms/test_suppression.py) checks the published marts with an independent solver
built from the rows' memberships.

Cells that appear in two marts of a family (the funnel's finished episodes and the outcome
rates; a therapist's effect size and shrunken estimate) are one cell: suppressed in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import sparse
from scipy.linalg import null_space
from scipy.optimize import linprog
from scipy.sparse.csgraph import connected_components

# Columns that describe the cell, not the clients in it; never suppressed.
KEEP_ALWAYS = frozenset(
    {
        "clinic_id", "therapist_id", "month", "instrument", "measure", "metric", "group",
        "level", "practice", "stratum", "scope", "unit", "estimand", "method", "direction",
        "observational", "suppressed", "adjustment", "period", "period_start",
        "band_low", "band_high", "bin_low", "bin_high", "alliance_instrument", "cutoff",
    }
)
TIME_LEVELS = {"all": 0, "year": 1, "quarter": 2, "month": 3}


def primary(frame: pl.DataFrame, min_cell_size: int, n_col: str = "n_clients") -> pl.Series:
    """Rows whose client count is below ``min_cell_size`` (or unknown)."""
    if n_col not in frame.columns:
        raise ValueError(f"suppression needs a client count column {n_col!r}")
    return frame.select(
        (pl.col(n_col).is_null() | (pl.col(n_col) < min_cell_size)).alias("suppressed")
    ).to_series()


def suppress(frame: pl.DataFrame, min_cell_size: int, n_col: str = "n_clients",
             also: pl.Series | None = None) -> pl.DataFrame:
    """Null every figure of rows whose ``n_col`` is below ``min_cell_size`` (and of the rows
    ``also`` marks: secondary suppression); add ``suppressed``."""
    small = primary(frame, min_cell_size, n_col)
    if also is not None:
        small = small | also
    figures = [c for c in frame.columns if c not in KEEP_ALWAYS]
    return frame.with_columns(small.alias("_small")).with_columns(
        *[pl.when(pl.col("_small")).then(None).otherwise(pl.col(c)).alias(c) for c in figures],
        pl.col("_small").alias("suppressed"),
    ).drop("_small")


# --- where each mart's rows sit ---------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """A mart's rows in its family's additive structure.

    ``group``: columns whose values are independent tables (instrument, practice ...);
    ``counts``: additive non-negative counts (renamed by ``rename`` to the family's names);
    ``time``: ``month`` (a ``month`` column, null = all time), ``period`` (``period`` all /
    month / quarter / year and ``period_start``) or None; ``therapist``: the therapist column
    (its rows are parts of the clinic row); ``part``: a category column (its rows are parts of
    the family's row at the same coordinates without a part)."""

    group: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)
    time: str | None = None
    therapist: str | None = None
    part: tuple[str, ...] = ()
    cells: Callable[[pl.DataFrame], pl.DataFrame] | None = None  # custom placement


CELL_COLUMNS = {"_row": pl.Int64, "_group": pl.String, "_clinic": pl.String,
                "_therapist": pl.String, "_level": pl.Int32, "_start": pl.Date,
                "_part": pl.String, "_part_parent": pl.String, "_fixed": pl.Boolean}


def _group_expr(cols: tuple[str, ...]) -> pl.Expr:
    if not cols:
        return pl.lit("")
    return pl.concat_str([pl.col(c).cast(pl.String).fill_null("∅") for c in cols],
                         separator="|")


def _cells(frame: pl.DataFrame, layout: Layout) -> pl.DataFrame:
    """One logical cell per row (custom layouts may give several, or fixed ones)."""
    data = frame.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    if layout.cells is not None:
        return layout.cells(data)
    if layout.time == "month":
        level = pl.when(pl.col("month").is_null()).then(0).otherwise(TIME_LEVELS["month"])
        start = pl.col("month")
    elif layout.time == "period":
        level = pl.col("period").replace_strict(TIME_LEVELS, return_dtype=pl.Int32)
        start = pl.col("period_start")
    else:
        level, start = pl.lit(0), pl.lit(None, dtype=pl.Date)
    part = (_group_expr(layout.part) if layout.part else pl.lit(None, dtype=pl.String))
    return data.select(
        "_row", _group_expr(layout.group).alias("_group"),
        pl.col("clinic_id").alias("_clinic") if "clinic_id" in data.columns
        else pl.lit(None, dtype=pl.String).alias("_clinic"),
        (pl.col(layout.therapist) if layout.therapist else pl.lit(None, dtype=pl.String))
        .alias("_therapist"),
        level.cast(pl.Int32).alias("_level"), start.cast(pl.Date).alias("_start"),
        part.alias("_part"), pl.lit(None, dtype=pl.String).alias("_part_parent"),
        pl.lit(False).alias("_fixed"),
        *[pl.col(c).cast(pl.Float64).alias(layout.rename.get(c, c)) for c in layout.counts],
    )


def _distribution_cells(data: pl.DataFrame) -> pl.DataFrame:
    """``dir_alliance_distribution``: bands are parts of their total (for SRS the
    ``below_cutoff`` row's n, for WAI-SR known from the shares: a fixed cell), and bands below
    the cutoff are parts of the ``below`` count."""
    base = {"_group": _group_expr(("instrument", "measure")), "_clinic": pl.col("clinic_id"),
            "_therapist": pl.lit(None, dtype=pl.String), "_level": pl.lit(0, pl.Int32),
            "_start": pl.lit(None, dtype=pl.Date)}
    cutoffs = data.filter(pl.col("metric") == "below_cutoff").group_by("instrument").agg(
        pl.col("cutoff").first().alias("_cut"))
    bands = data.filter(pl.col("metric") == "band").join(cutoffs, on="instrument", how="left")
    band_cells = bands.select(
        "_row", **base, _part=pl.lit("band ") + pl.col("band_low").cast(pl.String),
        _part_parent=pl.when(pl.col("band_high") <= pl.col("_cut")).then(pl.lit("below")),
        _fixed=pl.lit(False), n=pl.col("n").cast(pl.Float64))
    below = data.filter(pl.col("metric") == "below_cutoff")
    totals = below.select("_row", **base, _part=pl.lit(None, dtype=pl.String),
                          _part_parent=pl.lit(None, dtype=pl.String), _fixed=pl.lit(False),
                          n=pl.col("n").cast(pl.Float64))
    below_cells = below.select("_row", **base, _part=pl.lit("below"),
                               _part_parent=pl.lit(None, dtype=pl.String),
                               _fixed=pl.lit(False), n=pl.col("below").cast(pl.Float64))
    # Totals of instruments without a below_cutoff row: known from any shown band's share.
    implicit = (bands.filter(pl.col("_cut").is_null())
                .group_by("instrument", "measure", "clinic_id")
                .agg(pl.col("n").sum().cast(pl.Float64))
                .select(pl.lit(-1, dtype=pl.Int64).alias("_row"), **base,
                        _part=pl.lit(None, dtype=pl.String),
                        _part_parent=pl.lit(None, dtype=pl.String), _fixed=pl.lit(True),
                        n=pl.col("n")))
    return pl.concat([band_cells, totals, below_cells, implicit], how="vertical_relaxed")


def _therapist_alliance_cells(data: pl.DataFrame) -> pl.DataFrame:
    """SRS sessions per therapist are parts of the clinic's SRS session total (shown by
    ``dir_alliance_distribution`` on the same page)."""
    return data.select(
        "_row", _group=pl.concat_str([pl.col("instrument"), pl.lit("session total")],
                                     separator="|"),
        _clinic=pl.col("clinic_id"), _therapist=pl.col("therapist_id"),
        _level=pl.lit(0, pl.Int32), _start=pl.lit(None, dtype=pl.Date),
        _part=pl.lit(None, dtype=pl.String), _part_parent=pl.lit(None, dtype=pl.String),
        _fixed=pl.lit(False), n=pl.col("n_sessions").cast(pl.Float64))


OUTCOME_COUNTS = ("n", "recovered", "improved", "unchanged", "deteriorated", "harmed")
NHS_COUNTS = ("episodes", "finished", "not_caseness_at_start", "caseness_at_start",
              "recovered", "reliable_improvement", "reliable_deterioration",
              "reliable_recovery")

# Marts shown together (one page or one download), and where their rows sit.
FAMILIES: dict[str, dict[str, Layout]] = {
    "outcomes": {
        "dir_outcomes": Layout(("instrument",), OUTCOME_COUNTS, time="month"),
        "dir_outcomes_period": Layout(("instrument",), OUTCOME_COUNTS, time="period"),
        # The funnel's finished episodes and recovered are the outcome rows' n and recovered.
        "dir_funnel": Layout(("instrument",), ("finished", "recovered", "episodes",
                                               "caseness_at_start", "not_caseness_at_start"),
                             rename={"finished": "n"}, time="period"),
    },
    "nhs": {
        "dir_nhs_talking_therapies": Layout((), NHS_COUNTS, time="month"),
        "dir_nhs_talking_therapies_period": Layout((), NHS_COUNTS, time="period"),
    },
    "activity": {"dir_activity": Layout((), ("sessions", "new_episodes"), time="period")},
    "completeness": {"dir_completeness": Layout(
        (), ("sessions", "with_outcome", "with_alliance"), therapist="therapist_id")},
    "effect_size": {
        "dir_effect_size": Layout(("instrument",), ("n",), time="month",
                                  therapist="therapist_id"),
        "dir_therapist_effect": Layout(("instrument",), ("n",), therapist="therapist_id"),
    },
    "off_track": {"dir_off_track": Layout(
        ("instrument",), ("open_episodes", "assessable", "off_track"),
        therapist="therapist_id")},
    "practice_use": {"dir_practice_use": Layout(("practice",), ("n",), time="month",
                                                therapist="therapist_id")},
    "practice": {
        "dir_practice_effect": Layout(("instrument", "practice"), ("n",)),
        "dir_practice_outcome": Layout(("instrument", "practice"), ("n", "reliably_improved"),
                                       part=("level",)),
    },
    "alliance_outcome": {
        "dir_alliance_outcome": Layout(("instrument",), ("n",)),
        "dir_alliance_outcome_bins": Layout(("instrument",), ("n",),
                                            part=("alliance_instrument", "bin_low")),
    },
    "alliance": {
        "dir_alliance_distribution": Layout(cells=_distribution_cells),
        "dir_therapist_alliance": Layout(cells=_therapist_alliance_cells),
    },
    "subscales": {"dir_alliance_subscales": Layout(("instrument", "measure"), ("n",),
                                                   therapist="therapist_id")},
}


# --- the audit and the protection -------------------------------------------------------------

@dataclass
class _Table:
    """The logical cells of one group of a family and the additive relations between them."""

    cells: pl.DataFrame  # cell attributes; one row per logical cell
    rows: list[list[tuple[str, int]]]  # per cell: the (mart, row) it stands for
    relations: list[tuple[int, list[int]]]  # (parent cell, child cells): parent = sum
    counts: list[str]
    member_of: list[list[int]] = field(default_factory=list)  # per cell: its relations

    def __post_init__(self) -> None:
        self.member_of = [[] for _ in range(self.cells.height)]
        for r, (p, kids) in enumerate(self.relations):
            for m in (p, *kids):
                self.member_of[m].append(r)

    def column(self, col: str) -> np.ndarray:
        """The column's values as floats, NaN where null (or absent); cached."""
        cache = self.__dict__.setdefault("_columns", {})
        if col not in cache:
            cache[col] = (self.cells[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
                          if col in self.cells.columns
                          else np.full(self.cells.height, np.nan))
        return cache[col]

    def value(self, cell: int, col: str) -> float | None:
        v = self.column(col)[cell]
        return None if np.isnan(v) else float(v)


def _time_parent(level: int, start) -> list[tuple[int, object]]:
    """Ancestors of a time cell, nearest first: (level, start)."""
    out = []
    if level >= 3:
        out.append((2, start.replace(month=(start.month - 1) // 3 * 3 + 1)))
    if level >= 2:
        out.append((1, start.replace(month=1)))
    if level >= 1:
        out.append((0, None))
    return out


def _relations(cells: pl.DataFrame) -> list[tuple[int, list[int]]]:
    """Parent = sum of children, for the clinic, therapist, time and part dimensions."""
    coords = list(zip(cells["_clinic"], cells["_therapist"], cells["_level"], cells["_start"],
                      cells["_part"], strict=True))
    index = {c: i for i, c in enumerate(coords)}
    levels: dict[tuple, set[int]] = {}
    for clinic, ther, level, _, part in coords:
        levels.setdefault((clinic, ther, part), set()).add(level)
    children: dict[tuple[str, int], list[int]] = {}

    def add(rule: str, parent: tuple, child: int) -> None:
        p = index.get(parent)
        if p is not None and p != child:
            children.setdefault((rule, p), []).append(child)

    parents = cells["_part_parent"].to_list()
    for i, (clinic, ther, level, start, part) in enumerate(coords):
        if ther is not None:
            add("therapist", (clinic, None, level, start, part), i)
        elif clinic is not None:
            add("clinic", (None, None, level, start, part), i)
        present = levels[(clinic, ther, part)]
        for lv, st in _time_parent(level, start):
            if lv in present:
                add("time", (clinic, ther, lv, st, part), i)
                break
        if part is not None:
            add("part", (clinic, ther, level, start, parents[i]), i)
    return [(p, kids) for (_, p), kids in sorted(children.items())]


def _null_space_determined(matrix: np.ndarray) -> np.ndarray:
    """Columns (cells) whose value is fixed by ``matrix @ x = known``.

    The relations split into independent blocks (cells linked through shared relations):
    the null space is the direct sum of the blocks' null spaces, so each block is solved on
    its own (small SVDs instead of one of the whole table)."""
    n = matrix.shape[1]
    if n == 0:
        return np.zeros(0, dtype=bool)
    matrix = matrix[np.abs(matrix).sum(axis=1) > 0]
    if matrix.shape[0] == 0:
        return np.zeros(n, dtype=bool)
    used = sparse.csr_matrix(np.abs(matrix) > 0)
    _, label = connected_components((used.T @ used).tocsr(), directed=False)
    out = np.zeros(n, dtype=bool)
    touched = np.asarray(used.sum(axis=0)).ravel() > 0
    for comp in np.unique(label[touched]):
        cols = np.flatnonzero(label == comp)
        sub = matrix[:, cols]
        sub = sub[np.abs(sub).sum(axis=1) > 0]
        basis = null_space(sub)
        out[cols] = True if basis.size == 0 else np.abs(basis).max(axis=1) < 1e-9
    return out


def _audit(table: _Table, hidden: np.ndarray) -> list[tuple[int, str | None]]:
    """Suppressed cells whose value is determined: (cell, count column or None = linear)."""
    fixed = table.cells["_fixed"].to_numpy()
    secret = np.flatnonzero(hidden & ~fixed)
    if not len(secret) or not table.relations:
        return []
    pos = {c: j for j, c in enumerate(secret)}
    a = np.zeros((len(table.relations), len(secret)))
    for r, (p, kids) in enumerate(table.relations):
        if p in pos:
            a[r, pos[p]] += 1.0
        for k in kids:
            if k in pos:
                a[r, pos[k]] -= 1.0
    bad = [(int(secret[j]), None) for j in np.flatnonzero(_null_space_determined(a))]
    if bad:
        return bad
    for col in table.counts:
        bad += _audit_zeros(table, hidden, fixed, col)
    return bad


def _audit_zeros(table: _Table, hidden: np.ndarray, fixed: np.ndarray,
                 col: str) -> list[tuple[int, str | None]]:
    """Suppressed counts pinned by non-negativity (or by zeros that are public)."""
    column = table.column(col)
    known = ~np.isnan(column)
    rels = [(p, kids) for p, kids in table.relations if known[p] and known[kids].all()]
    if not rels:
        return []
    n = table.cells.height
    values = np.where(known, column, 0.0)
    public_zero = np.zeros(n, dtype=bool)
    changed = True
    while changed:  # a shown (or publicly) zero total makes its parts public zeros
        changed = False
        for p, kids in rels:
            if ((not hidden[p] or fixed[p] or public_zero[p]) and values[p] == 0
                    and not public_zero[kids].all()):
                public_zero[[p, *kids]] = True
                changed = True
    unknown = hidden & ~fixed & ~public_zero
    secret = np.flatnonzero(unknown)
    if not len(secret):
        return []
    if not (values[secret] == 0).any() and not (hidden & ~fixed & public_zero).any():
        return []  # all positive and no zero made public: the linear audit decided
    pos = {c: j for j, c in enumerate(secret)}
    a = np.zeros((len(rels), len(secret)))
    b = np.zeros(len(rels))
    for r, (p, kids) in enumerate(rels):
        for c, sign in ((p, 1.0), *((k, -1.0) for k in kids)):
            if c in pos:
                a[r, pos[c]] += sign
            else:
                b[r] -= sign * values[c]
    keep = np.abs(a).sum(axis=1) > 0
    a, b = a[keep], b[keep]
    # Which zero-valued cells can be positive: maximise their sum (each capped at 1); the
    # cells positive at the optimum can be, the others are asked again, until an optimum
    # adds none (a handful of programs instead of one per cell; the feasible set is convex).
    can_be_positive = np.ones(len(secret), dtype=bool)
    unknown = set(np.flatnonzero(values[secret] == 0).tolist())
    can_be_positive[list(unknown)] = False
    while unknown:
        c = np.zeros(len(secret))
        c[list(unknown)] = -1.0
        bounds = [(0, 1) if j in unknown else (0, None) for j in range(len(secret))]
        res = linprog(c, A_eq=a if len(b) else None, b_eq=b if len(b) else None,
                      bounds=bounds, method="highs")
        if res.status != 0:  # no verdict: count them as free (the linear audit still runs)
            can_be_positive[list(unknown)] = True
            break
        now = {j for j in unknown if res.x[j] > 1e-9}
        if not now:
            break
        can_be_positive[list(now)] = True
        unknown -= now
    out = [(int(secret[j]), col) for j in np.flatnonzero(~can_be_positive)]
    if out or not (hidden & ~fixed & public_zero).any():
        return out  # (no zero made public: the same unknowns, fewer relations than the
        # linear audit had, so nothing more is determined)
    # The cells that can be positive move freely only within the relations among themselves.
    free = np.flatnonzero(can_be_positive)
    determined = _null_space_determined(a[:, free])
    return [(int(secret[free[j]]), col) for j in np.flatnonzero(determined)]


def _delta(table: _Table, m: int, hidden_in: list[int]) -> int:
    """Change in the number of relations with a single suppressed cell if ``m`` is added."""
    return sum(1 if hidden_in[q] == 0 else -1 if hidden_in[q] == 1 else 0
               for q in table.member_of[m])


def _lookahead(table: _Table, m: int, hidden: np.ndarray, hidden_in: list[int],
               fixed: np.ndarray) -> int:
    """The best next step's change after adding ``m``: a partner that exposes a total now
    may let the next one pair up several relations at once (a rectangle across clinics and
    periods), which is what a good pattern looks like."""
    after = list(hidden_in)
    for q in table.member_of[m]:
        after[q] += 1
    best = 0
    for q, (p, kids) in enumerate(table.relations):
        if after[q] != 1:
            continue
        for n in (p, *kids):
            if n != m and not hidden[n] and not fixed[n]:
                best = min(best, _delta(table, n, after))
    return best


def _best(table: _Table, candidates: dict[int, bool], col: str | None, hidden: np.ndarray,
          size: np.ndarray, prefer: frozenset[str] = frozenset()) -> int | None:
    """The candidate that leaves the fewest relations with a single suppressed cell, looking
    one step ahead (it should pair up with cells already suppressed rather than expose new
    totals), then a sibling rather than a total, then, where a zero was pinned, one with a
    positive count, then the fewest clients."""
    fixed = table.cells["_fixed"].to_numpy()
    hidden_in = [int((hidden & ~fixed)[[p, *kids]].sum()) for p, kids in table.relations]
    best, best_key = None, None
    for m, is_total in candidates.items():
        delta = _delta(table, m, hidden_in)
        positive = col is None or (table.value(m, col) or 0) > 0
        ahead = delta + _lookahead(table, m, hidden, hidden_in, fixed)
        # Columns that pinned a zero want partners with a positive count there.
        zeros = sum((table.value(m, c) or 0) <= 0 for c in prefer)
        key = (not positive, zeros, is_total, ahead, delta, size[m], m)
        if best_key is None or key < best_key:
            best, best_key = m, key
    return best


def _partner(table: _Table, cell: int, col: str | None, hidden: np.ndarray,
             size: np.ndarray, prefer: frozenset[str] = frozenset()) -> int | None:
    """The cell to suppress next to protect ``cell``: the best (``_best``) shown cell of its
    relations, widening through suppressed cells when there is none."""
    fixed = table.cells["_fixed"].to_numpy()
    candidates: dict[int, bool] = {}
    frontier, seen = {cell}, set()
    while frontier and not candidates:
        seen |= frontier
        nxt: set[int] = set()
        for p, kids in table.relations:
            members = [p, *kids]
            if not frontier.intersection(members):
                continue
            for m in members:
                if hidden[m] and m not in seen:
                    nxt.add(m)
                if not (hidden[m] or fixed[m]):
                    candidates[m] = candidates.get(m, True) and m == p
        frontier = nxt
    return _best(table, candidates, col, hidden, size, prefer)


def _singleton(table: _Table, hidden: np.ndarray, size: np.ndarray,
               prefer: frozenset[str] = frozenset()) -> int | None:
    """A partner for a relation with exactly one suppressed cell (the plainest leak: total
    minus the shown parts), the relation of the smallest such cell first."""
    fixed = table.cells["_fixed"].to_numpy()
    open_ = []
    for p, kids in table.relations:
        members = [p, *kids]
        secret = [m for m in members if hidden[m] and not fixed[m]]
        shown = {m: m == p for m in members if not hidden[m] and not fixed[m]}
        if len(secret) == 1 and shown:
            open_.append((size[secret[0]], secret[0], shown))
    if not open_:
        return None
    _, _, shown = min(open_, key=lambda o: (o[0], o[1]))
    return _best(table, shown, None, hidden, size, prefer)


def _tied(table: _Table, cell: int) -> list[int]:
    """``cell`` and the cells that stand for one of its rows (a row is suppressed whole)."""
    rows = set(table.rows[cell])
    return [c for c, rs in enumerate(table.rows) if c == cell or rows.intersection(rs)]


def protect(table: _Table, hidden: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Add suppressed cells, one at a time, until the audit finds nothing determined."""
    hidden = hidden.copy()
    for cell in np.flatnonzero(hidden):
        hidden[_tied(table, int(cell))] = True
    prefer: set[str] = set()
    for _ in range(table.cells.height + 1):
        partner = _singleton(table, hidden, size, frozenset(prefer))
        if partner is None:
            bad = _audit(table, hidden)
            prefer |= {col for _, col in bad if col is not None}
            partner = next((q for q in (_partner(table, c, col, hidden, size, frozenset(prefer))
                                        for c, col in bad) if q is not None), None)
        if partner is None:
            break
        hidden[_tied(table, partner)] = True
    return hidden


def _family_tables(marts: dict[str, pl.DataFrame], layouts: dict[str, Layout],
                   first: dict[str, np.ndarray]) -> list[tuple[_Table, np.ndarray, np.ndarray]]:
    """Per group of a family: its cells and relations, which are suppressed first, their size
    (clients; the cheapest partner is the smallest)."""
    sizes = {m: marts[m]["n_clients"].cast(pl.Float64).fill_null(0.0).to_numpy()
             for m in layouts if m in marts and "n_clients" in marts[m].columns}
    parts = []
    for name, layout in layouts.items():
        if name not in marts or marts[name].is_empty() or name not in first:
            continue
        cells = _cells(marts[name], layout).with_columns(pl.lit(name).alias("_mart"))
        parts.append(cells)
    if not parts:
        return []
    every = pl.concat(parts, how="diagonal_relaxed")
    counts = [c for c in every.columns if not c.startswith("_")]
    out = []
    for _, part in every.group_by("_group", maintain_order=True):
        coord = ["_clinic", "_therapist", "_level", "_start", "_part"]
        merged = (part.sort(*coord, "_mart", "_row", nulls_last=False)
                  .group_by(coord, maintain_order=True)
                  .agg(pl.struct("_mart", "_row").alias("_rows"),
                       pl.col("_part_parent").drop_nulls().first(),
                       pl.col("_fixed").all(),
                       *[pl.col(c).drop_nulls().first() for c in counts]))
        rows = [[(r["_mart"], int(r["_row"])) for r in lst if r["_row"] >= 0]
                for lst in merged["_rows"].to_list()]
        table = _Table(merged, rows, _relations(merged), counts)
        hidden = np.array([any(first[m][i] for m, i in rs) for rs in rows], dtype=bool)
        size = np.array([min((sizes[m][i] for m, i in rs), default=0.0) for rs in rows])
        out.append((table, hidden, size))
    return out


def secondary(marts: dict[str, pl.DataFrame], first: dict[str, np.ndarray]
              ) -> dict[str, np.ndarray]:
    """Rows to suppress besides the primary ones, per mart (see module doc)."""
    extra = {name: np.zeros(len(flags), dtype=bool) for name, flags in first.items()}
    for layouts in FAMILIES.values():
        for table, hidden, size in _family_tables(marts, layouts, first):
            final = protect(table, hidden, size)
            for cell in np.flatnonzero(final):
                for mart, row in table.rows[cell]:
                    if not first[mart][row]:
                        extra[mart][row] = True
    return extra


def suppress_marts(
    marts: dict[str, pl.DataFrame], min_cell_size: int, prefix: str = "dir_"
) -> dict[str, pl.DataFrame]:
    """Primary and secondary suppression of every mart whose name starts with ``prefix``."""
    first = {name: primary(frame, min_cell_size).to_numpy() for name, frame in marts.items()
             if name.startswith(prefix)}
    extra = secondary(marts, first)
    return {
        name: suppress(frame, min_cell_size, also=pl.Series(extra[name], dtype=pl.Boolean))
        if name in first else frame
        for name, frame in marts.items()
    }
