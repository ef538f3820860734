"""Shared page helpers: the signed-in user, clinic scoping, honest number formatting,
safe downloads and small chart builders. Presentation only: every figure comes from a mart."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import altair as alt
import polars as pl
import streamlit as st

from dashboards import auth
from dashboards.queries import current_snapshot
from tandem.core import published
from tandem.core.settings import Settings, get_settings

SUPPRESSED = "suppressed"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
OBSERVATIONAL = ("**Observational:** clients were not randomised to these practices; the "
                 "differences are associations adjusted for intake severity, not proof of cause.")
ALL = "All clinics"


def current_user() -> auth.User | None:
    user = st.session_state.get("user")
    return user if isinstance(user, auth.User) else None


def page_context(
    roles: Sequence[str] = auth.ROLES,
) -> tuple[Settings, auth.User, published.Snapshot]:
    """Settings, the signed-in user (with a permitted role) and the current snapshot; stops
    the page otherwise. Each call re-reads the CURRENT pointer, so a new publish shows at once."""
    user = current_user()
    if user is None:
        st.warning("Please sign in.")
        st.stop()
    if user.role not in roles:
        st.error("Your role may not see this page.")
        st.stop()
    settings = get_settings()
    snapshot = current_snapshot()
    if snapshot is None:
        st.info("No data published yet. Run `tandem ingest PATH...` then `tandem aggregate`.")
        st.stop()
    return settings, user, snapshot


def snapshot_caption(snapshot: published.Snapshot) -> None:
    st.caption(f"Published data of {snapshot.published_at:%Y-%m-%d %H:%M} UTC "
               f"(snapshot {snapshot.version}). Cells with fewer than the minimum number of "
               "clients are shown as *suppressed*.")


def scope(frame: pl.DataFrame, user: auth.User, col: str = "clinic_id") -> pl.DataFrame:
    """Only the rows the user may see; null clinic (= all clinics) only for all-clinic users."""
    if frame.is_empty() or col not in frame.columns or user.all_clinics:
        return frame
    return frame.filter(pl.col(col).is_in(list(user.clinics or ())))


def clinic_sql(user: auth.User, col: str = "clinic_id") -> tuple[str, tuple]:
    """A SQL condition and its parameters restricting ``col`` to the user's clinics."""
    if user.all_clinics:
        return "TRUE", ()
    return f"list_contains(?::VARCHAR[], {col})", (list(user.clinics or ()),)


def clinic_picker(user: auth.User, available: Sequence[str], key: str = "clinic") -> str | None:
    """Sidebar choice of one clinic, or None for all clinics (only for all-clinic users)."""
    clinics = sorted(c for c in set(available) if c is not None and user.may_see(c))
    options = ([ALL] if user.all_clinics else []) + clinics
    if not options:
        st.info("No published data for your clinics yet.")
        st.stop()
    choice = st.sidebar.selectbox("Clinic", options, key=key)
    return None if choice == ALL else choice


def scalar(value: object) -> float | None:
    """A number from a mart cell (None for null or NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def is_suppressed(row: dict) -> bool:
    return bool(row.get("suppressed"))


def fmt_rate(row: dict, prefix: str) -> str:
    """``52.1% (95% CI 48.0–56.2)`` from ``prefix``, ``prefix_ci_low`` and ``prefix_ci_high``."""
    if is_suppressed(row):
        return SUPPRESSED
    rate = scalar(row.get(prefix))
    if rate is None:
        return "–"
    lo, hi = scalar(row.get(f"{prefix}_ci_low")), scalar(row.get(f"{prefix}_ci_high"))
    ci = f" (95% CI {100 * lo:.1f}–{100 * hi:.1f})" if lo is not None and hi is not None else ""
    return f"{100 * rate:.1f}%{ci}"


def fmt_mean(row: dict, col: str, low: str | None = None, high: str | None = None,
             digits: int = 1, signed: bool = False) -> str:
    """``+4.2 (95% CI 3.1 to 5.3)``; suppressed cells say so."""
    if is_suppressed(row):
        return SUPPRESSED
    value = scalar(row.get(col))
    if value is None:
        return "–"
    lo, hi = scalar(row.get(low or f"{col}_ci_low")), scalar(row.get(high or f"{col}_ci_high"))
    sign = "+" if signed else ""
    ci = (f" (95% CI {lo:{sign}.{digits}f} to {hi:{sign}.{digits}f})"
          if lo is not None and hi is not None else "")
    return f"{value:{sign}.{digits}f}{ci}"


def fmt_count(row: dict, col: str) -> str:
    if is_suppressed(row):
        return SUPPRESSED
    value = row.get(col)
    return "–" if value is None else f"{int(value):,}"


def suppressed_note(frame: pl.DataFrame, what: str = "cells") -> None:
    """Say how many cells were suppressed (so a gap in a chart is not read as zero)."""
    if "suppressed" in frame.columns and frame.height:
        k = int(frame["suppressed"].sum())
        if k:
            st.caption(f"{k} {what} suppressed (fewer than the minimum number of clients); "
                       "they are left out of the chart, not counted as 0.")


def safe_cell(value: object) -> object:
    """Neutralise spreadsheet formulas: prefix text starting with = + - @ tab or CR with '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_csv(frame: pl.DataFrame) -> bytes:
    """CSV bytes safe to open in a spreadsheet: every text cell that could be a formula is
    quoted with a leading apostrophe (lists and structs are written as JSON-ish text first)."""
    out = frame.with_columns(
        [pl.col(c).cast(pl.String) for c, t in frame.schema.items()
         if isinstance(t, pl.List | pl.Array | pl.Struct)]
    ) if frame.width else frame
    out = out.with_columns(
        [pl.when(pl.col(c).str.contains(r"^[=+\-@\t\r]")).then(pl.lit("'") + pl.col(c))
         .otherwise(pl.col(c)).alias(c)
         for c, t in out.schema.items() if t == pl.String]
    )
    return out.write_csv().encode("utf-8")


def download(frame: pl.DataFrame, label: str, file_name: str, user: auth.User,
             settings: Settings, what: str, key: str) -> None:
    """A CSV download button (formula-safe) that writes an audit record when used."""
    st.download_button(
        label, data=safe_csv(frame), file_name=file_name, mime="text/csv", key=key,
        on_click=auth.audit, args=(settings, user, "download"),
        kwargs={"what": what, "rows": frame.height, "file": file_name},
    )


def forest(frame: pl.DataFrame, y: str, x: str, low: str, high: str, x_title: str,
           color: str | None = None, zero: bool = True, height: int | None = None) -> alt.Chart:
    """Point estimates with 95% interval bars (suppressed rows dropped by the caller)."""
    base = alt.Chart(frame.to_pandas())
    enc = {"y": alt.Y(f"{y}:N", title=None, sort=None, axis=alt.Axis(labelLimit=260))}
    if color:
        enc["color"] = alt.Color(f"{color}:N")
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X(f"{low}:Q", title=x_title), x2=f"{high}:Q", **enc)
    points = base.mark_point(filled=True, size=70).encode(
        x=f"{x}:Q", tooltip=[c for c in frame.columns if not c.startswith("_")], **enc)
    layers = [bars, points]
    if zero:
        layers.append(alt.Chart().mark_rule(strokeDash=[4, 4], color="gray")
                      .encode(x=alt.datum(0)))
    chart = alt.layer(*layers)
    return chart.properties(height=height) if height else chart


def as_date(value: object) -> dt.date | None:
    return value if isinstance(value, dt.date) else None


def rate_metric(container, label: str, row: dict | None, prefix: str, n_col: str,
                n_label: str = "episodes") -> None:
    """A headline rate: the value, then its 95% CI and denominator underneath."""
    if row is None:
        container.metric(label, "–")
        return
    if is_suppressed(row):
        container.metric(label, SUPPRESSED)
        container.caption("fewer than the minimum number of clients")
        return
    rate = scalar(row.get(prefix))
    container.metric(label, "–" if rate is None else f"{100 * rate:.1f}%")
    lo, hi = scalar(row.get(f"{prefix}_ci_low")), scalar(row.get(f"{prefix}_ci_high"))
    if lo is not None and hi is not None:
        container.caption(f"95% CI {100 * lo:.1f}–{100 * hi:.1f}%; n = {fmt_count(row, n_col)} "
                          f"{n_label}")


def count_metric(container, label: str, row: dict | None, col: str, note: str = "") -> None:
    container.metric(label, "–" if row is None else fmt_count(row, col))
    if note:
        container.caption(note)


def first_row(frame: pl.DataFrame, **where: object) -> dict | None:
    """The first row matching ``col=value`` (None values match nulls)."""
    for col, value in where.items():
        if col not in frame.columns:
            return None
        frame = frame.filter(pl.col(col).is_null() if value is None else pl.col(col) == value)
    return frame.row(0, named=True) if frame.height else None


def period_label(period: str, start: dt.date | None) -> str:
    """``all time``, ``2025`` or ``2025-Q3`` for a period row of a ``*_period`` mart."""
    if period == "all" or start is None:
        return "all time"
    if period == "year":
        return f"{start:%Y}"
    if period == "quarter":
        return f"{start:%Y}-Q{(start.month - 1) // 3 + 1}"
    return f"{start:%Y-%m}"


def period_end(period: str, start: dt.date) -> dt.date:
    """The first day after a month, quarter or year starting on ``start``."""
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    m = start.month - 1 + months
    return dt.date(start.year + m // 12, m % 12 + 1, 1)


def show(chart: alt.TopLevelMixin, width: str = "stretch", extra: int = 110,
         default: int = 260) -> None:
    """Draw a chart at its intended height. Streamlit (1.67) ignores the Vega-Lite ``height``
    of a stretched chart and squashes the plot, so the height (plot + ``extra`` for title and
    axes) is passed to ``st.altair_chart`` itself."""
    h = getattr(chart, "height", None)
    plot = h if isinstance(h, int) else default
    st.altair_chart(chart, width=width, height=plot + extra)


def _num(value: object) -> str:
    v = scalar(value)
    return "–" if v is None else f"{v:g}"


def definition_text(definitions: pl.DataFrame, instrument: str) -> str:
    """How a figure's change is judged, in one sentence, from the published
    ``outcome_definitions`` row of ``instrument`` (method, threshold or critical value,
    boundary, cutoff and the side it belongs to). Empty when the mart has no such row."""
    row = first_row(definitions, instrument=instrument) if definitions.height else None
    if row is None:
        return ""
    if row["method"] == "programme":
        return f"Definition: {row['method_name']}. {row.get('notes') or ''}".strip()
    method = row["method"]
    if method in ("threshold", "anchor"):
        rule = (f"a change of at least {_num(row['improvement_threshold'])} points "
                f"({row['boundary']})")
    elif method == "percentage":
        rule = (f"a change of at least {100 * (scalar(row['improvement_threshold']) or 0):g}% "
                f"of intake ({row['boundary']})")
    else:
        rule = (f"|index| > {_num(row['critical_value'])} ({row['sided']}-sided, "
                f"alpha {_num(row['alpha'])})")
    text = f"Definition ({instrument}): {row['method_name']}; reliable when {rule}"
    if scalar(row.get("cutoff")) is not None:
        side = {"clinical": "a score on the cutoff counts as clinical",
                "functional": "a score on the cutoff counts as non-clinical",
                "neither": "a score on the cutoff is neither"}.get(
            row.get("value_belongs_to") or "", "")
        population = f", {row['cutoff_population']}" if row.get("cutoff_population") else ""
        text += (f"; clinical cutoff {_num(row['cutoff'])} ({row['cutoff_kind']}"
                 f"{population}; {side})")
    return text + f". Categories: {row['categories']}. See *Outcome definitions*."


def definition_caption(definitions: pl.DataFrame, instrument: str) -> None:
    """``definition_text`` as a caption (nothing when there is no definition row)."""
    text = definition_text(definitions, instrument)
    if text:
        st.caption(text)
