"""One generation run: every clinic's files, contracts, the truth and the manifest.

Clinics are independent (each has its own seed stream and its own files), so they can be
generated in parallel processes with byte-identical results in any worker count. Within a
clinic, clients are generated and written a chunk at a time: memory stays bounded.
"""

from __future__ import annotations

import multiprocessing
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tandem.core.contracts import write_clinic_contract
from tandem.synth import model as m
from tandem.synth.clinics import ClinicSpec, make_clinics
from tandem.synth.faults import OUTCOMES
from tandem.synth.manifest import MANIFEST_VERSION, write_manifest
from tandem.synth.options import CHUNK_CLIENTS, GenerateOptions
from tandem.synth.population import (
    generate_chunk,
    make_therapists,
    observed_episode_measures,
)
from tandem.synth.writers import WRITERS

WORK_DIR = ".work"


@dataclass
class ClinicResult:
    clinic_id: str
    clients: int = 0
    episodes: int = 0
    sessions: int = 0
    administrations: int = 0
    item_answers: int = 0
    files: list[dict] = field(default_factory=list)
    # sufficient statistics over finished episodes (see _accumulate)
    stats: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class GenerateResult:
    out: Path
    manifest_path: Path
    clinics: int
    files: int
    administrations: int
    faults: int


def _accumulate(stats: dict[str, np.ndarray], obs: dict[str, np.ndarray]) -> None:
    """Sums for the sample correlation (alliance, change) and the OLS of change on
    intake and exposure, so estimates over millions of episodes need no episode kept."""
    fin = obs["finished"] & ~np.isnan(obs["exposure"])
    x = np.c_[np.ones(fin.sum()), obs["intake"][fin], obs["exposure"][fin]]
    y = obs["change"][fin]
    stats.setdefault("xtx", np.zeros((3, 3)))
    stats.setdefault("xty", np.zeros(3))
    stats.setdefault("r", np.zeros(6))
    stats["xtx"] += x.T @ x
    stats["xty"] += x.T @ y
    k = obs["finished"] & ~np.isnan(obs["alliance"])
    a, c = obs["alliance"][k], obs["change"][k]
    stats["r"] += np.array([k.sum(), a.sum(), c.sum(), (a * a).sum(), (c * c).sum(),
                            (a * c).sum()])


def _estimates(stats: dict[str, np.ndarray]) -> dict:
    if not stats:
        return {}
    n, sa, sc, saa, scc, sac = stats["r"]
    r = float((n * sac - sa * sc) / np.sqrt((n * saa - sa**2) * (n * scc - sc**2))) \
        if n > 2 else None
    beta = np.linalg.lstsq(stats["xtx"], stats["xty"], rcond=None)[0]
    return {
        "episodes_with_alliance": int(n),
        "finished_episodes": int(stats["xtx"][0, 0]),
        "alliance_outcome_r": None if r is None else round(r, 4),
        "practice_effect": round(float(beta[2]), 4),
        "intake_coefficient": round(float(beta[1]), 4),
    }


def _truth_frame(spec: ClinicSpec, chunk, therapists) -> pl.DataFrame:
    t = chunk.truth
    day = pl.Series  # days since 1970-01-01, cast to dates below
    return pl.DataFrame({
        "clinic_id": pl.repeat(spec.clinic_id, len(t["client"]), eager=True),
        "client_id": chunk.client_ids[t["client"]].astype(object).astype(str),
        "episode": t["episode"].astype(np.int16),
        "therapist_id": therapists.ids[t["therapist"]].astype(str),
        "outcome_instrument": "ORS" if spec.family == "ORS" else "PHQ9",
        "n_sessions": t["n_sessions"].astype(np.int16),
        "finished": t["n_sessions"] >= 2,
        "first_session_number": t["first_session_number"].astype(np.int32),
        "start_date": day(t["start_day"].astype(np.int32)).cast(pl.Date),
        "end_date": day(t["end_day"].astype(np.int32)).cast(pl.Date),
        "intake_true": t["intake_true"],
        "change_true": t["change_true"],
        "exposure": t["exposure"],
        "alliance_true": t["alliance_true"],
        "therapist_effect": t["therapist_effect"],
    })


def generate_clinic(spec: ClinicSpec, options: GenerateOptions, params: m.ModelParams,
                    work: Path) -> ClinicResult:
    """Every file of one clinic (runs in a worker process)."""
    people_ss, faults_ss = np.random.SeedSequence([options.seed, spec.index]).spawn(2)
    rng = np.random.default_rng(people_ss)
    therapists = make_therapists(spec, params, rng)
    writer = WRITERS[spec.format](spec, options, options.out / "files",
                                  work / f"faults-{spec.index:05d}.jsonl",
                                  np.random.default_rng(faults_ss))
    res = ClinicResult(spec.clinic_id)
    truth_parts = []
    number = int(rng.integers(1000, 5000))
    remaining = spec.n_clients
    while remaining > 0:
        n = min(CHUNK_CLIENTS, remaining)
        remaining -= n
        chunk, number = generate_chunk(spec, therapists, params, rng, n, number, options.as_of)
        writer.write_chunk(chunk)
        res.clients += n
        res.episodes += len(chunk.truth["n_sessions"])
        res.sessions += chunk.n_sessions
        res.administrations += chunk.n_administrations
        res.item_answers += sum(s.size for _, s in chunk.admins.values())
        _accumulate(res.stats, observed_episode_measures(chunk, spec.family))
        truth_parts.append(_truth_frame(spec, chunk, therapists))
    res.files = writer.finish()
    pl.concat(truth_parts).write_parquet(work / f"truth-{spec.index:05d}.parquet",
                                         statistics=False)
    return res


def _clinic_job(args: tuple) -> ClinicResult:
    return generate_clinic(*args)


def generate(options: GenerateOptions,
             progress: Callable[[str, int, int], None] | None = None) -> GenerateResult:
    """Generate a data set into ``options.out``; ``progress(clinic, done, total)``."""
    out = options.out
    if (out / "files").exists():
        shutil.rmtree(out / "files")
    work = out / WORK_DIR
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (out / "files").mkdir(parents=True)
    params = m.calibrate(options.effects)
    specs = make_clinics(options)
    contracts_dir = out / "data_contracts" / "clinics"
    if contracts_dir.exists():
        shutil.rmtree(contracts_dir)
    for spec in specs:
        write_clinic_contract(spec.contract(), contracts_dir)

    jobs = [(spec, options, params, work) for spec in specs]
    results: list[ClinicResult] = []
    if options.workers <= 1 or len(specs) == 1:
        for i, job in enumerate(jobs, start=1):
            results.append(_clinic_job(job))
            if progress:
                progress(job[0].clinic_id, i, len(jobs))
    else:
        # "spawn": forking a process whose Polars thread pool is running can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(options.workers, len(specs)),
                                 mp_context=ctx) as pool:
            for i, res in enumerate(pool.map(_clinic_job, jobs), start=1):
                results.append(res)
                if progress:
                    progress(res.clinic_id, i, len(jobs))

    _merge_truth(sorted(work.glob("truth-*.parquet")), out / "truth_episodes.parquet")
    stats: dict[str, dict[str, np.ndarray]] = {"ORS": {}, "PHQ": {}}
    for spec, res in zip(specs, results, strict=True):
        fam = stats[spec.family]
        for k, v in res.stats.items():
            fam[k] = fam[k] + v if k in fam else v.copy()
    files = [f for r in results for f in r.files]
    head = {
        "manifest_version": MANIFEST_VERSION,
        "generator": "tandem.synth",
        "seed": options.seed,
        "as_of": options.as_of.isoformat(),
        "options": options.to_json(),
        "truth": {
            "alliance_outcome_r": options.effects.alliance_outcome_r,
            "practice_effect_ors": options.effects.practice_effect_ors,
            "therapist_variance_share": options.effects.therapist_variance_share,
            "alliance_outcome_r_phq9": options.effects.alliance_outcome_r_phq9,
            "practice_effect_phq9": options.effects.practice_effect_phq9,
            "sample": {"ORS": _estimates(stats["ORS"]), "PHQ9": _estimates(stats["PHQ"])},
            "model": params.to_json(),
            "episodes_file": "truth_episodes.parquet",
        },
        "outcomes": sorted({*OUTCOMES.values(), "undetectable"}),
        "clinics": [
            {
                "clinic_id": s.clinic_id, "format": s.format,
                "outcome_instrument": "ORS" if s.family == "ORS" else "PHQ9",
                "encoding": s.encoding, "started_on": s.started_on.isoformat(),
                "contract": f"data_contracts/clinics/{s.clinic_id}.yaml",
                "therapists": len(s.therapists), "clients": r.clients, "episodes": r.episodes,
                "sessions": r.sessions, "administrations": r.administrations,
                "item_answers": r.item_answers,
            }
            for s, r in zip(specs, results, strict=True)
        ],
        "totals": {
            "clinics": len(specs),
            "clients": sum(r.clients for r in results),
            "episodes": sum(r.episodes for r in results),
            "sessions": sum(r.sessions for r in results),
            "administrations": sum(r.administrations for r in results),
            "item_answers": sum(r.item_answers for r in results),
            "files": len(files),
        },
        "files": files,
    }
    n_faults = write_manifest(out / "manifest.json", head,
                              sorted(work.glob("faults-*.jsonl")))
    shutil.rmtree(work)
    return GenerateResult(out=out, manifest_path=out / "manifest.json", clinics=len(specs),
                          files=len(files), administrations=head["totals"]["administrations"],
                          faults=n_faults)


def _merge_truth(parts: list[Path], dest: Path) -> None:
    """One Parquet file from the clinics' parts, a part at a time."""
    import pyarrow.parquet as pq

    writer = None
    for p in parts:
        table = pq.read_table(p)
        if writer is None:
            writer = pq.ParquetWriter(dest, table.schema, write_statistics=False)
        writer.write_table(table)
    if writer is not None:
        writer.close()

