"""Each dashboard page, run with Streamlit's AppTest against a published snapshot: the figures
shown equal the marts, small cells say "suppressed", and roles restrict what is seen."""

from __future__ import annotations

import contextlib
import json

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from dashboards import auth, ui
from tandem.core import published
from tests.dashboards.conftest import ADMIN, APP, DIRECTOR, QUALITY, app_as, frames


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# Sign-in and roles ----------------------------------------------------------------------

def test_sign_in_with_password_then_overview(marts, tandem_home):
    auth.add_user(tandem_home, "dana", "correct horse", "director", ["northside"])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.text_input[0].label == "User name"
    at.text_input[0].input("dana")
    at.text_input[1].input("wrong password")
    at.button[0].click().run()
    assert "wrong password" in at.error[0].value
    assert ui.current_user() is None
    at.text_input[1].input("correct horse")
    at.button[0].click().run()
    assert not at.exception
    assert at.title[0].value == "Overview"
    log = (tandem_home.home_dir / "audit" / "access.jsonl").read_text().splitlines()
    assert [json.loads(x)["action"] for x in log] == ["sign_in_failed", "sign_in"]


def test_users_file_holds_only_bcrypt_hashes(tandem_home):
    created = auth.ensure_demo_users(tandem_home)
    assert set(created) == {"director", "quality", "admin"}
    text = auth.users_path(tandem_home).read_text()
    assert all(pw not in text for pw in created.values())
    assert "$2b$" in text
    user = auth.authenticate(tandem_home, "director", created["director"])
    assert user is not None and user.role == "director" and user.clinics == ("northside",)
    assert auth.ensure_demo_users(tandem_home) == {}  # existing users are kept
    assert auth.authenticate(tandem_home, "nobody", "whatever1") is None


def test_users_cli_adds_a_hashed_user(tandem_home):
    from typer.testing import CliRunner

    from tandem.app.users_cli import users_command

    result = CliRunner().invoke(users_command, ["add", "lee", "--role", "quality", "--clinic",
                                                "northside"], input="s3cret-pass\ns3cret-pass\n")
    assert result.exit_code == 0, result.output
    assert auth.authenticate(tandem_home, "lee", "s3cret-pass").clinics == ("northside",)
    assert "s3cret-pass" not in auth.users_path(tandem_home).read_text()


def test_page_list_depends_on_role(marts):
    director = app_as(DIRECTOR)
    with pytest.raises(ValueError):
        director.switch_page("views/loads.py")
    quality = app_as(QUALITY, "loads")
    assert quality.title[0].value == "Loads and quarantine"
    with contextlib.suppress(ValueError):  # not a registered page for this role
        quality.switch_page("views/users.py").run()
    assert "Users" not in [t.value for t in quality.title]
    admin = app_as(ADMIN, "users")
    assert admin.title[0].value == "Users"


def test_quality_page_refuses_a_director_run_directly(marts):
    at = AppTest.from_file(APP.replace("main.py", "views/loads.py"), default_timeout=60)
    at.session_state["user"] = DIRECTOR
    at.run()
    assert "may not see" in at.error[0].value
    assert not at.dataframe


def test_without_data_the_page_says_what_to_do(tandem_home):
    at = app_as(DIRECTOR)
    assert "No data published yet" in at.info[0].value


# Overview -------------------------------------------------------------------------------

def test_overview_figures_equal_the_marts_for_the_directors_clinic(marts):
    at = app_as(DIRECTOR)
    assert at.sidebar.selectbox[0].options == ["northside"]  # no other clinic, no "all"
    row = marts["dir_outcomes"].filter(
        (pl.col("clinic_id") == "northside") & pl.col("month").is_null()
        & (pl.col("instrument") == "ORS")).row(0, named=True)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Finished episodes"] == f"{row['n']:,}"
    assert metrics["Recovered"] == _pct(row["recovered_rate"])
    assert metrics["Reliably deteriorated"] == _pct(row["deteriorated_rate"])
    active = marts["dir_off_track"].filter(
        (pl.col("clinic_id") == "northside") & pl.col("therapist_id").is_null()
        & (pl.col("instrument") == "ORS")).row(0, named=True)
    # (secondary suppression may hide it: riverside's small cell is not to be derived)
    assert metrics["Active clients"] == ("suppressed" if active["suppressed"]
                                         else f"{active['n_clients']:,}")
    captions = " ".join(c.value for c in at.caption)
    assert f"n = {row['n']:,} episodes" in captions
    freshness = frames(at)[-1]
    assert freshness["clinic_id"].to_list() == ["northside"]


def test_overview_monthly_cells_say_suppressed_never_zero(marts):
    at = app_as(DIRECTOR)
    monthly = next(f for f in frames(at) if "month" in f.columns)
    mart = marts["dir_outcomes"].filter((pl.col("clinic_id") == "northside")
                                        & (pl.col("instrument") == "ORS")
                                        & pl.col("month").is_not_null()).sort("month")
    small = mart.filter(pl.col("suppressed"))["month"].map_elements(
        lambda d: f"{d:%Y-%m}", return_dtype=pl.String).to_list()
    assert small, "the synthetic data has suppressed months"
    shown = monthly.filter(pl.col("month").is_in(small))
    assert set(shown["n"]) == {"suppressed"} and set(shown["recovered"]) == {"suppressed"}
    assert "0" not in monthly["n"].to_list()


def test_overview_headline_cell_suppressed(tandem_home, marts):
    small = {k: v for k, v in marts.items()}
    small["dir_outcomes"] = marts["dir_outcomes"].with_columns(
        pl.when(pl.col("clinic_id") == "northside").then(True).otherwise(pl.col("suppressed"))
        .alias("suppressed"),
        pl.when(pl.col("clinic_id") == "northside").then(None).otherwise(pl.col("n"))
        .alias("n"))
    published.publish(small, tandem_home)
    at = app_as(DIRECTOR)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Finished episodes"] == "suppressed"
    assert metrics["Recovered"] == "suppressed"


def test_overview_nhs_talking_therapies_for_all_clinics(marts):
    at = app_as(QUALITY)
    at.sidebar.selectbox[0].select("eastgate").run()
    assert at.sidebar.selectbox[1].value.startswith("PHQ-9 + GAD-7")
    row = marts["dir_nhs_talking_therapies"].filter(
        (pl.col("clinic_id") == "eastgate") & pl.col("month").is_null()).row(0, named=True)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Recovery rate"] == _pct(row["recovery_rate"])
    assert metrics["Reliable improvement"] == _pct(row["reliable_improvement_rate"])
    funnel = frames(at)[0]
    assert funnel["episodes"].to_list() == [f"{row[c]:,}" for c in
                                            ("episodes", "finished", "caseness_at_start",
                                             "recovered")]


def test_next_view_after_a_publish_shows_the_new_data(tandem_home, marts):
    at = app_as(DIRECTOR)
    before = {m.label: m.value for m in at.metric}["Finished episodes"]
    changed = dict(marts)
    changed["dir_outcomes"] = marts["dir_outcomes"].with_columns(
        pl.when(pl.col("clinic_id") == "northside").then(pl.lit(4321, dtype=pl.UInt32))
        .otherwise(pl.col("n")).alias("n"))
    published.publish(changed, tandem_home)
    at.run()
    after = {m.label: m.value for m in at.metric}["Finished episodes"]
    assert before != after == "4,321"


# Practices ------------------------------------------------------------------------------

def test_practices_show_mart_estimates_marked_observational(marts):
    at = app_as(DIRECTOR, "practices")
    assert "Observational" in at.warning[0].value
    use, effect = frames(at)[:2]
    mart = marts["dir_practice_effect"].filter(
        (pl.col("scope") == "clinic") & (pl.col("clinic_id") == "northside")
        & (pl.col("instrument") == "ORS") & (pl.col("practice") == "all")).row(0, named=True)
    shown = effect.filter(pl.col("practice") == "All practices (mean exposure)").row(0, named=True)
    assert shown["episodes (n)"] == f"{mart['n']:,}"
    assert shown["points of change per 0→100% exposure (95% CI)"].startswith(
        f"{mart['estimate']:+.1f} (95% CI {mart['ci_low']:+.1f}")
    top = marts["dir_practice_use"].filter((pl.col("clinic_id") == "northside")
                                           & (pl.col("practice") == "top_score")).row(0, named=True)
    assert use.filter(pl.col("practice") == "CollaboRATE top score")[
        "mean share of sessions (95% CI)"][0].startswith(_pct(top["mean_share"]))
    # The director sees the exposure levels of their own clinic (never all clinics pooled).
    levels = next(f for f in frames(at) if "exposure level" in f.columns)
    lv = marts["dir_practice_outcome"].filter(
        (pl.col("clinic_id") == "northside") & (pl.col("practice") == "all")
        & (pl.col("instrument") == "ORS"))
    assert levels["episodes (n)"].to_list() == [
        "suppressed" if r["suppressed"] else f"{r['n']:,}"
        for r in lv.sort(pl.col("level").replace_strict({"low": 0, "medium": 1, "high": 2}))
        .iter_rows(named=True)]
    assert levels["reliable improvement (95% CI)"][0].startswith("suppressed") or "95% CI" in \
        levels["reliable improvement (95% CI)"][0]


def test_practices_by_level_for_all_clinic_users(marts):
    at = app_as(QUALITY, "practices")
    levels = next(f for f in frames(at) if "exposure level" in f.columns)
    mart = marts["dir_practice_outcome"].filter(
        pl.col("clinic_id").is_null() & (pl.col("practice") == "all")).sort(
        "instrument", pl.col("level").replace_strict({"low": 0, "medium": 1, "high": 2}))
    assert levels["episodes (n)"].to_list() == [
        "suppressed" if r["suppressed"] else f"{r['n']:,}" for r in mart.iter_rows(named=True)]


# Alliance -------------------------------------------------------------------------------

def test_alliance_correlation_and_srs_share(marts):
    at = app_as(DIRECTOR, "alliance")
    r = marts["dir_alliance_outcome"].filter(pl.col("clinic_id") == "northside").row(0, named=True)
    corr = next(f for f in frames(at) if "outcome" in f.columns)
    assert corr["r, better alliance ↔ better outcome (95% CI)"][0].startswith(
        f"{r['r_improvement']:+.2f}")
    sa = marts["session_alliance"].filter(pl.col("clinic_id") == "northside")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sessions with an SRS"] == f"{sa.height:,}"
    assert metrics["Sessions with SRS below 36"] == _pct(sa["low_alliance"].mean())


# Therapists -----------------------------------------------------------------------------

def test_therapists_funnel_not_a_ranking(marts):
    at = app_as(DIRECTOR, "therapists")
    table = frames(at)[0]
    mart = marts["dir_therapist_effect"].filter((pl.col("clinic_id") == "northside")
                                                & (pl.col("instrument") == "ORS"))
    assert table["therapist"].to_list() == sorted(mart["therapist_id"].to_list())
    assert not any("rank" in c.lower() for c in table.columns)
    assert set(table["compared with average"]) <= {"above", "below", "not distinguishable",
                                                   "suppressed"}
    assert any("Funnel" in c.value for c in at.caption)


# Off track ------------------------------------------------------------------------------

def test_off_track_counts_for_directors_list_only_for_quality(marts, tandem_home):
    director = app_as(DIRECTOR, "off_track")
    row = marts["dir_off_track"].filter((pl.col("clinic_id") == "northside")
                                        & pl.col("therapist_id").is_null()).row(0, named=True)
    shown = "suppressed" if row["suppressed"] else f"{row['off_track']:,}"
    assert {m.label: m.value for m in director.metric}["Off track (ORS)"] == shown
    assert all("episode_id" not in f.columns for f in frames(director))
    quality = app_as(QUALITY, "off_track")
    listed = frames(quality)[-1]
    expected = marts["off_track_episode"].filter(pl.col("off_track"))
    assert sorted(listed["episode_id"]) == sorted(expected["episode_id"])
    log = (tandem_home.home_dir / "audit" / "access.jsonl").read_text()
    assert '"what": "off_track_episode"' in log and '"user": "quinn"' in log


# Quality pages --------------------------------------------------------------------------

def test_loads_show_every_batch_and_quarantined_row(marts):
    at = app_as(QUALITY, "loads")
    batches, failed, quarantine = frames(at)
    assert batches.height == marts["audit_batch"].height
    assert failed["reason"].to_list() == marts["audit_batch"].filter(
        pl.col("status") == "failed")["reason"].to_list()
    assert quarantine.height == marts["audit_quarantine"].height
    at.multiselect(key="q_rule").select("therapist_on_roster").run()
    assert set(frames(at)[2]["rule"]) == {"therapist_on_roster"}


def test_quality_user_scoped_to_a_clinic_sees_only_its_batches(marts):
    at = app_as(auth.User("q2", "quality", "Q2", ("eastgate",)), "loads")
    batches = frames(at)[0]
    assert set(batches["clinic_id"]) == {"eastgate"}


def test_downloads_are_safe_against_formula_injection():
    frame = pl.DataFrame({"a": ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "ok"],
                          "n": [1, 2, 3, 4, 5, 6, 7]})
    cells = pl.read_csv(ui.safe_csv(frame))["a"].to_list()
    assert cells[:6] == ["'" + v for v in frame["a"].to_list()[:6]]
    assert cells[6] == "ok"


def test_validation_history_and_completeness_render(marts):
    at = app_as(QUALITY, "validation")
    summary = frames(at)[0]
    res = marts["audit_validation_result"].join(
        marts["audit_batch"].select("batch_id", "clinic_id"), on="batch_id")
    first = sorted(res["clinic_id"].unique())[0]
    assert summary["batches"].sum() == res.filter(pl.col("clinic_id") == first).height
    comp = app_as(QUALITY, "completeness")
    per_clinic = frames(comp)[0]
    sessions = per_clinic["sessions (n)"].str.replace_all(",", "").cast(pl.Int64)
    assert sessions.sum() == marts["episode_session"].height
    es = marts["episode_session"]
    exact = marts["dir_completeness"].filter((pl.col("clinic_id") == "northside")
                                             & pl.col("therapist_id").is_null()).row(0, named=True)
    north = es.filter(pl.col("clinic_id") == "northside")
    assert exact["with_alliance"] == north["has_alliance"].sum()
    shown = per_clinic.filter(pl.col("clinic") == "northside")["% with alliance (95% CI)"][0]
    assert shown.startswith(f"{100 * north['has_alliance'].mean():.1f}%")


def test_lineage_episodes_add_up_to_the_figure(marts):
    at = app_as(QUALITY, "lineage")
    figure = marts["dir_outcomes"].filter(
        (pl.col("clinic_id") == at.selectbox(key="lin_clinic").value)
        & (pl.col("instrument") == at.selectbox(key="lin_inst").value)
        & pl.col("month").is_null()).row(0, named=True)
    episodes, sessions, batches = frames(at)
    assert episodes.height == figure["n"]
    assert set(sessions["episode_id"]) == set(episodes["episode_id"])
    assert batches.height > 0


# Marts added for the dashboard ------------------------------------------------------------

def test_overview_ors_funnel_and_period_come_from_the_marts(marts):
    at = app_as(DIRECTOR)
    funnel = frames(at)[0]
    row = marts["dir_funnel"].filter(
        (pl.col("clinic_id") == "northside") & (pl.col("period") == "all")
        & (pl.col("instrument") == "ORS")).row(0, named=True)
    assert funnel["episodes"].to_list() == [f"{row[c]:,}" for c in
                                            ("episodes", "finished", "caseness_at_start",
                                             "recovered")]
    year = marts["dir_outcomes_period"].filter(
        (pl.col("clinic_id") == "northside") & (pl.col("period") == "year")
        & (pl.col("instrument") == "ORS")).sort("period_start").row(0, named=True)
    box = at.sidebar.selectbox(key="overview_period")
    box.select(("year", year["period_start"])).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Finished episodes"] == f"{year['n']:,}"
    assert metrics["Recovered"] == _pct(year["recovered_rate"])


def test_therapists_funnel_limits_use_the_mart_sigma(marts):
    at = app_as(DIRECTOR, "therapists")
    sigma = marts["dir_therapist_effect"].filter(
        (pl.col("instrument") == "ORS") & ~pl.col("suppressed"))["sigma"].median()
    assert any(f"z·{sigma:.1f}/√n" in c.value for c in at.caption)


def test_alliance_distribution_and_bins_from_the_marts(marts):
    at = app_as(DIRECTOR, "alliance")
    row = marts["dir_alliance_distribution"].filter(
        (pl.col("clinic_id") == "northside") & (pl.col("metric") == "below_cutoff")
    ).row(0, named=True)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sessions with SRS below 36"] == _pct(row["below_rate"])
    assert not any("Every alliance band is suppressed" in c.value for c in at.caption)


# Definitions and effect sizes ------------------------------------------------------------

def test_overview_says_which_definition_its_figures_use(marts):
    at = app_as(DIRECTOR)
    captions = " ".join(c.value for c in at.caption)
    assert ("Definition (ORS): Published reliable change (points); reliable when a change of "
            "at least 5 points (inclusive); clinical cutoff 25 (published, adult; a score on "
            "the cutoff counts as non-clinical)") in captions
    assert "harmed" in captions
    row = marts["dir_outcomes"].filter(
        (pl.col("clinic_id") == "northside") & pl.col("month").is_null()
        & (pl.col("instrument") == "ORS")).row(0, named=True)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Harmed (into the clinical range)"] == (
        "suppressed" if row["suppressed"] else _pct(row["harmed_rate"]))


def test_outcome_definitions_page_lists_method_parameters_cutoffs_and_sources(marts):
    at = app_as(DIRECTOR, "outcome_definitions")
    assert at.title[0].value == "Outcome definitions"
    headers = [h.value for h in at.subheader]
    defs = marts["outcome_definitions"]
    assert headers == [f"{r['name']} ({r['instrument']})" for r in defs.iter_rows(named=True)]
    tables = frames(at)
    summary = tables[0]
    assert summary["method"].to_list() == defs["method_name"].to_list()
    phq = dict(zip(*tables[1 + defs["instrument"].to_list().index("PHQ9")].get_columns(),
                   strict=True))
    assert phq["Improvement threshold"] == "6" and phq["Clinical cutoff"] == "10"
    assert phq["A score on the cutoff counts as"] == "clinical"
    assert phq["Effect-size benchmark (d)"] == "0.96"
    assert "NHS Talking Therapies" in phq["Sources"] and "Gaskell" in phq["Benchmark source"]
    ors = dict(zip(*tables[1 + defs["instrument"].to_list().index("ORS")].get_columns(),
                   strict=True))
    assert ors["Boundary"] == "inclusive" and ors["Changes compared at decimals"] == "1"


def test_effect_sizes_beside_the_benchmark_with_intervals_and_suppression(marts):
    at = app_as(QUALITY, "effect_sizes")
    at.selectbox(key="es_instrument").select("PHQ9").run()
    assert not at.exception
    row = marts["dir_effect_size"].filter(
        (pl.col("unit") == "all") & (pl.col("instrument") == "PHQ9")).row(0, named=True)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Benchmark d"] == "0.96"
    assert metrics["Severity-adjusted d"] == (
        "suppressed" if row["suppressed"] else f"{row['adjusted_d']:.2f}")
    captions = " ".join(c.value for c in at.caption)
    assert "Gaskell" in captions
    if not row["suppressed"]:
        assert f"95% CI {row['adjusted_d_ci_low']:.2f} to {row['adjusted_d_ci_high']:.2f}" \
            in captions
    ther = marts["dir_effect_size"].filter((pl.col("unit") == "therapist")
                                           & (pl.col("instrument") == "PHQ9"))
    shown = next(f for f in frames(at) if "therapist" in f.columns)
    assert shown.height == ther.height
    hidden = ther.filter(pl.col("suppressed")).height
    assert (shown["episodes (n)"] == "suppressed").sum() == hidden
    assert "0" not in shown["episodes (n)"].to_list()


def test_a_clinic_director_sees_the_effect_sizes_of_their_clinic_only(marts):
    at = app_as(DIRECTOR, "effect_sizes")
    assert at.sidebar.selectbox(key="es_clinic").options == ["northside"]
    table_ = next(f for f in frames(at) if "therapist" in f.columns)
    assert all(t.startswith("northside / ") for t in table_["therapist"])
