"""Every way to judge individual change, against the published outputs of the reference
implementation: the R package clinicalsignificance v3 (benediktclaus/clinicalsignificance at
7b2f20bd; its testthat snapshots, README, vignettes and pkgdown pages built from that commit),
its v1.2.0 snapshots, and Jacobson & Truax (1991) Table 2 (JTRCI's plot of it).

The rules are written as Tandem writes them, a ``change:`` block (``ChangeRule``), and run
through the Polars implementation (``classify_reliable_change``,
``classify_clinical_significance``, ``transforms.hlm``). Counts are reproduced exactly, in the
package's category order; indices to the printed 3 significant digits; cutoffs to the printed
decimals. The package's semantics: clinical at start ``d pre < d c`` and functional at end
``d post > d c`` (``value_belongs_to: neither``), criterion b with the clinical SD, the
dysfunctional population = the sample's intake scores, indices strict against qnorm(.975)
(HA: qnorm(.95)), anchor and percentage inclusive. Vectors as catalogued in FINDINGS.md §7 of
the research notes that found them (numbers in the test names).
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from tandem.core.contracts import ChangeCutoff, ChangeRule, Instrument, NormSpec
from transforms.clinical_significance import classify_clinical_significance
from transforms.hlm import fit_growth, slope_index
from transforms.reliable_change import RCI_CRITICAL, classify_reliable_change, critical_value

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference-data"
if not REFERENCE.exists():
    REFERENCE = Path("/work/shared/reference-data")
pytestmark = pytest.mark.skipif(not REFERENCE.exists(), reason="reference data not mounted")

ORDER3 = ("improved", "unchanged", "deteriorated")
ORDER5 = ("recovered", "improved", "unchanged", "deteriorated", "harmed")


# --- data, as the package prepares it: wide, complete pairs, data order -----------------------

def wide(name: str, idk: str, timek: str, outk: str, pre: str, post: str,
         groupk: str | None = None) -> pl.DataFrame:
    raw = pl.read_csv(REFERENCE / name, infer_schema_length=0).with_row_index("_order")
    long = raw.select("_order", pl.col(idk).alias("id"), pl.col(timek).alias("time"),
                      pl.col(outk).cast(pl.Float64, strict=False).alias("y"),
                      *([pl.col(groupk).alias("group")] if groupk else []))
    first = long.group_by("id").agg(pl.col("_order").min().alias("_o"),
                                    *([pl.col("group").first()] if groupk else []))
    a = long.filter(pl.col("time") == pre).select("id", pl.col("y").alias("pre"))
    b = long.filter(pl.col("time") == post).select("id", pl.col("y").alias("post"))
    out = first.join(a, on="id").join(b, on="id").sort("_o")
    return out.filter(pl.col("pre").is_not_null() & pl.col("post").is_not_null()).drop("_o")


def claus(outcome: str) -> pl.DataFrame:
    return wide("cs_claus_2020.csv", "id", "time", outcome, "1", "4", "treatment")


@pytest.fixture(scope="module")
def hamd() -> pl.DataFrame:
    return claus("hamd")


@pytest.fixture(scope="module")
def bdi() -> pl.DataFrame:
    return claus("bdi")


@pytest.fixture(scope="module")
def ad() -> pl.DataFrame:
    return wide("cs_antidepressants.csv", "patient", "measurement", "mom_di", "Before", "After",
                "condition")


def rule(method: str, **kw) -> ChangeRule:
    return ChangeRule(method=method, score_decimals=2, min_reference_episodes=2, **kw)


def package_cutoff(kind: str = "a", m_functional: float | None = None,
                   sd_functional: float | None = None) -> ChangeCutoff:
    """The package's cutoff: dysfunctional = sample pre, b with the clinical SD, strict."""
    func = (NormSpec(mean=m_functional, sd=sd_functional)
            if m_functional is not None and kind != "a" else None)
    return ChangeCutoff(kind=kind, functional=func, value_belongs_to="neither", b_sd="clinical")


def judge(instruments: dict[str, Instrument], pairs: pl.DataFrame, change: ChangeRule,
          better: str = "lower", hlm: pl.DataFrame | None = None) -> pl.DataFrame:
    base = instruments["PHQ9" if better == "lower" else "ORS"]
    inst = base.model_copy(update={"code": "X", "change": change, "reliable_change": None,
                                   "clinical_cutoff": None, "norms": None})
    frame = pairs.select(pl.col("id").cast(pl.String).alias("episode_id"),
                         pl.lit("X").alias("instrument"),
                         pl.col("pre").alias("first_score"), pl.col("post").alias("last_score"),
                         *([pl.col("group")] if "group" in pairs.columns else []))
    rc = classify_reliable_change(frame, {"X": inst}, hlm_index=hlm)
    return classify_clinical_significance(rc, {"X": inst}).collect()


def counts(out: pl.DataFrame, col: str = "category", order=ORDER5) -> tuple[int, ...]:
    return tuple(int((out[col] == c).sum()) for c in order)


def by_group(out: pl.DataFrame, col: str, order) -> dict[str, tuple[int, ...]]:
    return {g: counts(part, col, order)
            for (g,), part in out.group_by("group", maintain_order=True)}


def sig3(values) -> list[float]:
    return [float(f"{x:.3g}") for x in values]


# --- constants and boundaries ---------------------------------------------------------------

def test_critical_values_are_qnorm_not_rounded():
    assert pytest.approx(1.959963984540054, abs=1e-15) == RCI_CRITICAL
    assert critical_value(0.05, "one") == pytest.approx(1.6448536269514722, abs=1e-15)
    assert critical_value(0.01) == pytest.approx(2.5758293035489004, abs=1e-14)


def test_an_index_of_exactly_1_96_is_reliable_and_qnorm_itself_is_not(instruments):
    """Strict against qnorm(.975) = 1.959964: JT with r = .75 and S1 = 1.414213562373095 has
    S_diff = 1.0 exactly, so these changes are the indices themselves."""
    pairs = pl.DataFrame({"id": ["a", "b", "c", "d"], "pre": [0.0] * 4,
                          "post": [RCI_CRITICAL, 1.96, -1.96, -RCI_CRITICAL]})
    jt = rule("JT", reliability=0.75, sd_pre=1.414213562373095)
    jt = jt.model_copy(update={"score_decimals": 12})  # changes are not on a 0.01 grid
    out = judge(instruments, pairs, jt, better="higher")
    assert out["reliable_change"].to_list() == ["unchanged", "improved", "deteriorated",
                                                "unchanged"]


# --- #1, #3, #4, #5, #7: cs_distribution ------------------------------------------------------

HAMD_DISTRIBUTION = {"JT": (29, 10, 1), "GLN": (29, 10, 1), "EN": (32, 5, 3),
                     "HLL": (12, 16, 12), "NK": (28, 11, 1), "HA": (32, 7, 1)}


@pytest.mark.parametrize("method", list(HAMD_DISTRIBUTION))
def test_1_distribution_hamd_every_index(instruments, hamd, method):
    extra = {"reliability_post": 0.5} if method == "NK" else {}
    out = judge(instruments, hamd, rule(method, reliability=0.80, **extra))
    assert counts(out, "reliable_change", ORDER3) == HAMD_DISTRIBUTION[method]


def test_3_distribution_hamd_by_treatment(instruments, hamd):
    out = judge(instruments, hamd, rule("JT", reliability=0.80))
    assert by_group(out, "reliable_change", ORDER3) == {"TAU": (9, 9, 1), "PA": (20, 1, 0)}
    assert round(9 / 19, 4) == 0.4737  # printed 47.37%


def test_4_distribution_antidepressants(instruments, ad):
    out = judge(instruments, ad, rule("JT", reliability=0.80))
    assert counts(out, "reliable_change", ORDER3) == (274, 237, 44)
    assert [f"{100 * n / 555:.2f}%" for n in (274, 237, 44)] == ["49.37%", "42.70%", "7.93%"]


def test_5_distribution_bdi_vignette(instruments, bdi):
    assert counts(judge(instruments, bdi, rule("JT", reliability=0.801)), "reliable_change",
                  ORDER3) == (18, 22, 0)
    assert counts(judge(instruments, bdi, rule("HA", reliability=0.801)), "reliable_change",
                  ORDER3) == (25, 15, 0)


def test_7_augmented_rci_first_ten(instruments, bdi):
    out = judge(instruments, bdi, rule("JT", reliability=0.80))
    assert sig3(out["change_index"][:10]) == [-1.16, -1.36, -1.94, 1.36, 1.16, -1.36, -0.581,
                                              -2.91, -4.46, -5.81]
    assert (out["reliable_change"][:10] == "improved").to_list() == [False] * 7 + [True] * 3


# --- #2, #6, #8, #17: HLM --------------------------------------------------------------------

def _hlm(outcome: str) -> tuple[pl.DataFrame, pl.DataFrame, object]:
    """The package's HLM preparation: rows with a score, patients with >= 3, pre/post = first
    and last available; the model fitted on them; the index per patient."""
    raw = pl.read_csv(REFERENCE / "cs_claus_2020.csv", infer_schema_length=0).with_row_index()
    long = raw.select("index", pl.col("id").str.zfill(3).alias("episode_id"),
                      pl.col("time").cast(pl.Int32),
                      pl.col(outcome).cast(pl.Float64, strict=False).alias("score"),
                      pl.col("treatment").alias("group")).drop_nulls("score")
    keep = long.group_by("episode_id").len().filter(pl.col("len") >= 3).select("episode_id")
    long = long.join(keep, on="episode_id", how="semi").sort("index")
    fit = fit_growth(long)
    index = slope_index(long, fit).select(
        "episode_id", pl.lit("X").alias("instrument"), pl.col("hlm_index").alias("_hlm_index"))
    pairs = long.group_by("episode_id", maintain_order=True).agg(
        pl.col("score").first().alias("pre"), pl.col("score").last().alias("post"),
        pl.col("group").first()).rename({"episode_id": "id"})
    return pairs, index, fit


def test_2_6_hlm_bdi_model_categories_and_indices(instruments):
    pairs, index, fit = _hlm("bdi")
    assert (pairs.height, fit.n_obs) == (40, 160)
    assert round(fit.reml_criterion, 3) == 1106.347           # cs_get_model print
    assert (round(fit.sd_intercept, 3), round(fit.sd_slope, 3)) == (6.344, 2.766)
    assert (round(fit.corr, 2), round(fit.sigma, 3)) == (-0.08, 5.316)
    # exactly 37.6625 and -3.3975 (balanced design): lme4 prints 37.663 / -3.398
    assert fit.beta.tolist() == pytest.approx([37.6625, -3.3975], abs=1e-9)
    out = judge(instruments, pairs, rule("HLM"), hlm=index)
    assert counts(out, "reliable_change", ORDER3) == (5, 32, 3)
    assert sig3(out["change_index"][:10]) == [0.422, -0.0659, -1.46, 2.61, 1.13, -0.340,
                                              0.774, -1.64, -0.572, -2.11]
    assert out["first_score"][:4].to_list() == [33, 26, 15, 39]
    assert out["last_score"][:4].to_list() == [27, 19, 5, 46]


def test_2_17_hlm_hamd_singular_fit_and_combined(instruments):
    pairs, index, fit = _hlm("hamd")
    assert fit.corr == pytest.approx(-1, abs=1e-6)   # on the boundary (singular fit)
    out = judge(instruments, pairs, rule("HLM", cutoff=package_cutoff("c", 8, 8)), hlm=index)
    assert counts(out, "reliable_change", ORDER3) == (11, 20, 9)
    assert counts(out) == (10, 1, 20, 9, 0)


# --- #9 - #14: cutoffs a, b, c (the statistical approach's flags) ------------------------------

def _statistical(out: pl.DataFrame) -> tuple[int, int, int]:
    """cs_statistical's categories from the flags: improved = clinical at start and functional
    at end; deteriorated = neither."""
    cp, fp = out["clinical_at_start"], out["functional_at_end"]
    return int((cp & fp).sum()), int((cp ^ fp).sum()), int((~cp & ~fp).sum())


def test_9_statistical_hamd_cutoffs_a_and_c(instruments, hamd):
    a = judge(instruments, hamd, rule("JT", reliability=0.8, cutoff=package_cutoff("a")))
    assert round(a["cutoff"][0], 2) == 18.17 and _statistical(a) == (26, 13, 1)
    c = judge(instruments, hamd, rule("JT", reliability=0.8, cutoff=package_cutoff("c", 8, 8)))
    assert round(c["cutoff"][0], 2) == 19.89 and _statistical(c) == (26, 13, 1)


def test_10_statistical_hamd_ha_true_cutoff(instruments, hamd):
    out = judge(instruments, hamd, rule("HA", reliability=0.8, cutoff=package_cutoff("c", 8, 8)))
    assert out["cutoff_criterion"][0] == "c_true" and round(out["cutoff"][0], 2) == 20.21
    crit = critical_value(0.05, "one")
    clinical_end = ~out["clinical_at_start"] & (-out["cutoff_index"] < -crit)
    assert (int(out["functional_at_end"].sum()), int(clinical_end.sum())) == (23, 0)


def test_11_12_statistical_grouped_and_bdi(instruments, hamd, bdi):
    c = judge(instruments, hamd, rule("JT", reliability=0.8, cutoff=package_cutoff("c", 8, 8)))
    assert {g: _statistical(p) for (g,), p in c.group_by("group", maintain_order=True)} == {
        "TAU": (7, 11, 1), "PA": (19, 2, 0)}
    b = judge(instruments, bdi, rule("JT", reliability=0.8,
                                     cutoff=package_cutoff("c", 7.69, 7.52)))
    assert round(b["cutoff"][0], 2) == 21.02 and _statistical(b) == (13, 27, 0)
    assert {g: _statistical(p) for (g,), p in b.group_by("group", maintain_order=True)} == {
        "TAU": (5, 14, 0), "PA": (8, 13, 0)}


def test_13_14_statistical_bdi_flags_and_cutoff(instruments, bdi):
    a = judge(instruments, bdi, rule("JT", reliability=0.8, cutoff=package_cutoff("a", 8, 8)))
    assert a["clinical_at_start"][:10].to_list() == [True, True, False] + [True] * 7
    assert a["functional_at_end"][:10].to_list() == [False, True, True, False, False, True,
                                                     False, True, False, True]
    c = judge(instruments, bdi, rule("JT", reliability=0.8, cutoff=package_cutoff("c", 8, 8)))
    assert round(c["cutoff"][0], 1) == 21.6
    assert (float(f"{bdi['pre'].mean():.3g}"), float(f"{bdi['pre'].std():.3g}")) == (35.5, 8.16)


def test_criterion_b_uses_the_sd_the_definition_names(instruments, hamd):
    """b = M_func - d 2 SD: the package uses the clinical (sample) SD; the paper the
    functional SD. Both are expressible (``b_sd``)."""
    sd1 = float(hamd["pre"].std())
    pkg = judge(instruments, hamd, rule("JT", reliability=0.8,
                                        cutoff=package_cutoff("b", 8, 3)))
    assert pkg["cutoff"][0] == pytest.approx(8 + 2 * sd1)
    paper = ChangeCutoff(kind="b", functional=NormSpec(mean=8, sd=3))
    out = judge(instruments, hamd, rule("JT", reliability=0.8, cutoff=paper))
    assert out["cutoff"][0] == pytest.approx(14)


# --- #15 - #22, #33: cs_combined (five categories) ---------------------------------------------

HAMD_COMBINED = {"JT": (26, 3, 10, 1, 0), "EN": (26, 6, 5, 3, 0), "HLL": (12, 0, 16, 11, 1),
                 "GLN": (26, 3, 10, 1, 0), "NK": (26, 2, 11, 1, 0), "HA": (23, 9, 7, 1, 0)}


@pytest.mark.parametrize("method", list(HAMD_COMBINED))
def test_15_combined_hamd_every_index(instruments, hamd, method):
    extra = {"reliability_post": 0.5} if method == "NK" else {}
    out = judge(instruments, hamd, rule(method, reliability=0.80,
                                        cutoff=package_cutoff("c", 8, 8), **extra))
    assert counts(out) == HAMD_COMBINED[method]


def test_16_ha_group_level_changed_and_functional(instruments, hamd):
    """The HA group level (printed with cs_combined(..., "HA")): Changed 90.31%, Functional
    75.55%, from r_dd, the sample and the true cutoff."""
    from statistics import NormalDist

    out = judge(instruments, hamd, rule("HA", reliability=0.8, cutoff=package_cutoff("c", 8, 8)))
    pre, post = hamd["pre"], hamd["post"]
    s1, s2, rho = pre.std(), post.std(), pl.DataFrame({"a": pre, "b": post}).select(
        pl.corr("a", "b")).item()
    se2 = s1 ** 2 * 0.2
    r1, r2 = (s1 ** 2 - se2) / s1 ** 2, (s2 ** 2 - se2) / s2 ** 2
    r_dd = (s1 ** 2 * r1 + s2 ** 2 * r2 - 2 * s1 * s2 * rho) / (s1 ** 2 + s2 ** 2
                                                                - 2 * s1 * s2 * rho)
    change = post - pre
    z_changed = -change.mean() / (change.std() * math.sqrt(r_dd))
    z_func = (out["cutoff"][0] - post.mean()) / (s2 * math.sqrt(r2))
    phi = NormalDist().cdf
    assert (f"{100 * phi(z_changed):.2f}%", f"{100 * phi(z_func):.2f}%") == ("90.31%", "75.55%")


def test_18_combined_hamd_default_cutoff_a(instruments, hamd):
    out = judge(instruments, hamd, rule("JT", reliability=0.8, cutoff=package_cutoff("a")))
    assert round(out["cutoff"][0], 2) == 18.17 and counts(out) == (26, 3, 10, 1, 0)


def test_19_20_combined_bdi_readme_and_vignette(instruments, bdi):
    for r, cut, value in ((0.801, package_cutoff("c", 7.69, 7.52), 21.02),
                          (0.801, package_cutoff("a", 7.69, 7.52), 19.16),
                          (0.80, package_cutoff("a"), 19.16),
                          (0.80, package_cutoff("c", 8, 8), 21.6)):
        out = judge(instruments, bdi, rule("JT", reliability=r, cutoff=cut))
        assert round(out["cutoff"][0], 2) == value
        assert counts(out) == (10, 8, 22, 0, 0)


def test_20_combined_bdi_by_treatment(instruments, bdi):
    out = judge(instruments, bdi, rule("JT", reliability=0.8, cutoff=package_cutoff("c", 8, 8)))
    assert by_group(out, "category", ORDER5) == {"TAU": (3, 2, 14, 0, 0),
                                                 "PA": (7, 6, 8, 0, 0)}


def test_21_anchor_with_cutoff_cwb(instruments, bdi):
    out = judge(instruments, bdi, rule("anchor", mid_improvement=7,
                                       cutoff=package_cutoff("a", 7.69, 7.52)))
    assert round(out["cutoff"][0], 2) == 19.16 and counts(out) == (13, 12, 11, 4, 0)


def test_22_combined_bdi_ha_summary_and_indices(instruments, bdi):
    out = judge(instruments, bdi, rule("HA", reliability=0.8, cutoff=package_cutoff("a", 8, 8)))
    assert out["cutoff_criterion"][0] == "a_true" and counts(out) == (7, 18, 15, 0, 0)
    assert sig3(out["cutoff_index"][:10]) == [1.72, -0.393, -4.08, 6.73, 1.98, -0.657, 2.51,
                                              -3.29, 0.925, -1.97]
    assert sig3(out["change_index"][:10]) == [-1.50, -1.67, -2.18, 0.732, 0.561, -1.67, -0.981,
                                              -3.04, -4.41, -5.61]
    assert (out["category"][:10] == "recovered").to_list() == [False] * 7 + [True, False, True]


def test_33_legacy_readme_bdi(instruments, bdi):
    out = judge(instruments, bdi, rule("JT", reliability=0.81, cutoff=package_cutoff("c", 8, 8)))
    assert round(out["cutoff"][0], 1) == 21.6 and counts(out) == (10, 9, 21, 0, 0)


# --- #23 - #27: percentage and anchor ---------------------------------------------------------

@pytest.mark.parametrize(("up", "down", "expected"), [
    (0.3, None, (25, 15, 0)), (0.3, 0.2, (25, 14, 1)), (0.5, None, (16, 24, 0)),
    (0.5, 0.3, (16, 24, 0))])
def test_23_percentage_hamd(instruments, hamd, up, down, expected):
    out = judge(instruments, hamd, rule("percentage", pct_improvement=up,
                                        pct_deterioration=down))
    assert counts(out, "reliable_change", ORDER3) == expected


def test_23_percentage_hamd_by_treatment(instruments, hamd):
    out = judge(instruments, hamd, rule("percentage", pct_improvement=0.3))
    assert by_group(out, "reliable_change", ORDER3) == {"TAU": (6, 13, 0), "PA": (19, 2, 0)}


def test_24_percentage_who5_higher_is_better_from_zero(instruments):
    who = claus("who")
    assert (who["pre"] == 0).sum() > 0   # a rise from 0 has no ratio: improved
    out = judge(instruments, who, rule("percentage", pct_improvement=0.3), better="higher")
    assert counts(out, "reliable_change", ORDER3) == (28, 9, 3)


def test_25_percentage_bdi(instruments, bdi):
    assert counts(judge(instruments, bdi, rule("percentage", pct_improvement=0.5)),
                  "reliable_change", ORDER3) == (11, 29, 0)
    assert counts(judge(instruments, bdi, rule("percentage", pct_improvement=0.5,
                                               pct_deterioration=0.2)),
                  "reliable_change", ORDER3) == (11, 26, 3)


def test_26_anchor_bdi_with_ties(instruments, bdi):
    """Five patients change by exactly -7 and one by +7: the published 25 improved needs >=."""
    change = bdi["post"] - bdi["pre"]
    assert ((change == -7).sum(), (change == 7).sum(), (-change > 7).sum()) == (5, 1, 20)
    out = judge(instruments, bdi, rule("anchor", mid_improvement=7))
    assert counts(out, "reliable_change", ORDER3) == (25, 11, 4)
    assert by_group(out, "reliable_change", ORDER3) == {"TAU": (8, 7, 4), "PA": (17, 4, 0)}
    assert counts(judge(instruments, bdi, rule("anchor", mid_improvement=8)),
                  "reliable_change", ORDER3) == (20, 17, 3)
    nine = judge(instruments, bdi, rule("anchor", mid_improvement=9))
    assert (nine["reliable_change"][:10] == "improved").to_list() == [
        False, False, True, False, False, False, False, True, True, True]


def test_27_anchor_antidepressants(instruments, ad):
    out = judge(instruments, ad, rule("anchor", mid_improvement=8))
    assert counts(out, "reliable_change", ORDER3) == (316, 175, 64)
    out = judge(instruments, ad, rule("anchor", mid_improvement=8, mid_deterioration=5))
    assert counts(out, "reliable_change", ORDER3) == (316, 152, 87)
    assert by_group(out, "reliable_change", ORDER3) == {
        "Wait List": (27, 65, 60), "Inactive Placebo": (71, 41, 18),
        "Active Placebo": (98, 20, 3), "Antidepressant": (120, 26, 6)}


def test_percentage_tie_is_inclusive(instruments, hamd):
    pct = (hamd["post"] - hamd["pre"]) / hamd["pre"]
    assert ((pct == -0.5).sum(), (-pct > 0.5).sum()) == (1, 15)
    out = judge(instruments, hamd, rule("percentage", pct_improvement=0.5))
    assert counts(out, "reliable_change", ORDER3)[0] == 16


# --- #31, #32, #34: v1.2.0 snapshots and Jacobson & Truax (1991) Table 2 ------------------------

LEGACY_GDS = {"JT": (10, 4, 12, 0, 0), "GLN": (12, 4, 10, 0, 0), "HLL": (7, 0, 11, 8, 0),
              "EN": (12, 5, 9, 0, 0), "NK": (12, 4, 10, 0, 0)}


@pytest.mark.parametrize("method", list(LEGACY_GDS))
def test_31_legacy_jacobson_1989_gds(instruments, method):
    gds = wide("cs_jacobson_1989.csv", "subject", "time", "gds", "pre", "post")
    assert gds.height == 26
    extra = {"reliability_post": 0.8} if method == "NK" else {}
    out = judge(instruments, gds, rule(method, reliability=0.8, cutoff=package_cutoff("a"),
                                       **extra))
    assert counts(out) == LEGACY_GDS[method]


def test_32_jacobson_1989_gds_ha_v3_rule(instruments):
    """v3: recovered needs clinical at start (6 / 11 / 9); v1.2.0 printed 7 / 10 / 9 without
    that condition, which the same indices reproduce."""
    gds = wide("cs_jacobson_1989.csv", "subject", "time", "gds", "pre", "post")
    out = judge(instruments, gds, rule("HA", reliability=0.8, cutoff=package_cutoff("a")))
    assert counts(out) == (6, 11, 9, 0, 0)
    improved = out["category"].is_in(["recovered", "improved"])
    legacy = -out["cutoff_index"] > 1.65
    assert (int((improved & legacy).sum()), int((improved & ~legacy).sum())) == (7, 10)


def test_34_jacobson_truax_1991_table2_das(instruments):
    das = pl.read_csv(REFERENCE / "jtrci_jt1991_table2_das.csv").select(
        pl.col("ppid").cast(pl.String).alias("id"), "pre", "post")
    assert das.height == 30
    same = wide("cs_jacobson_1989.csv", "subject", "time", "das", "pre", "post")
    assert same["pre"].to_list() == das["pre"].to_list()
    assert same["post"].to_list() == das["post"].to_list()
    out = judge(instruments, das, rule("JT", reliability=0.84, cutoff=package_cutoff("a")),
                better="higher")
    assert round(out["cutoff"][0], 1) == 105.2           # "JT criterion A: 105.2"
    assert counts(out) == (10, 8, 11, 1, 0)
    recovered = out.filter(pl.col("category") == "recovered")["episode_id"].to_list()
    assert recovered == ["2", "7", "13", "19", "20", "21", "22", "23", "24", "26"]
    assert out.filter(pl.col("category") == "deteriorated")["episode_id"].to_list() == ["29"]
    assert round(out.filter(pl.col("episode_id") == "2")["change_index"][0], 2) == 7.47


# --- through the marts: sample-based methods judged in stage 2 ----------------------------------

def _ors_rule(instruments: dict[str, Instrument], change: ChangeRule) -> dict[str, Instrument]:
    out = dict(instruments)
    out["ORS"] = instruments["ORS"].model_copy(update={"change": change})
    return out


def test_hlm_and_ha_through_the_two_stage_marts(instruments):
    """An instrument judged by HLM or HA in its YAML: stage 1 keeps the scores, stage 2 fits
    the model / takes the statistics on the reference sample (closed paired episodes, all
    clinics) and judges every episode; the definitions mart says what was used."""
    import datetime as dt

    import numpy as np

    from tests.transforms.synthetic import generate
    from transforms.change import reference_sample
    from transforms.marts import MartParams, build_marts
    from transforms.reliable_change import reference_statistics

    raw = generate(5, n_clients=300)
    noise = np.random.default_rng(1).normal(0, 0.6, raw.height)  # not exactly on a line
    responses = raw.with_columns(
        pl.when(pl.col("instrument") == "ORS")
        .then((pl.col("score") + pl.Series(noise)).clip(0, 10).round(1))
        .otherwise(pl.col("score")).alias("score"))
    params = MartParams(as_of=dt.date(2024, 9, 1), min_cell_size=5)
    cutoff = instruments["ORS"].change.cutoff
    hlm = build_marts(responses, _ors_rule(instruments, ChangeRule(method="HLM", cutoff=cutoff)),
                      params)
    ors = hlm["episode_measure"].filter(pl.col("instrument") == "ORS")
    assert set(ors["change_method"].drop_nulls()) == {"HLM"}
    many = ors.filter(pl.col("n_scores") >= 3)
    assert many["change_index"].null_count() == 0 and many["reliable_change"].null_count() == 0
    assert ors.filter(pl.col("n_scores") == 2)["reliable_change"].null_count() == \
        ors.filter(pl.col("n_scores") == 2).height          # too few scores for a slope
    definition = hlm["outcome_definitions"].filter(pl.col("instrument") == "ORS").row(
        0, named=True)
    assert definition["method"] == "HLM" and definition["hlm_mean_slope"] > 0
    assert definition["min_measurements"] == 3

    ha = build_marts(responses, _ors_rule(instruments, ChangeRule(
        method="HA", reliability=0.8, cutoff=cutoff)), params)
    measure = ha["episode_measure"].filter(pl.col("instrument") == "ORS")
    ref = reference_statistics(reference_sample(measure)).collect().row(0, named=True)
    definition = ha["outcome_definitions"].filter(pl.col("instrument") == "ORS").row(
        0, named=True)
    assert definition["reference_episodes"] == ref["_n_ref"]
    assert definition["reference_sd_pre"] == pytest.approx(ref["_s1"])
    assert definition["critical_value"] == pytest.approx(1.6448536269514722)
    paired = measure.filter(pl.col("paired"))
    assert paired["cutoff_index"].null_count() == 0            # HA's CS_indiv
    assert set(paired["category"]) <= set(ORDER5)


def test_hlm_gives_no_index_when_the_model_has_no_fit():
    """Scores exactly on a line in every episode: the residual variance goes to 0 and REML has
    no minimum (lme4 would not converge); no fit, so no HLM category rather than a wrong one."""
    rows = [{"episode_id": f"e{i}", "time": t, "score": 20.0 + i + (1 + i % 3) * t}
            for i in range(30) for t in range(1, 5)]
    assert fit_growth(pl.DataFrame(rows)) is None
