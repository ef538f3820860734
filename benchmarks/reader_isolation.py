"""What running readers in the worker process costs: ``python -m benchmarks.reader_isolation``.

Reads a canonical CSV of ``--rows`` rows (written here, 8 text columns) with its reader
in this process and through :func:`tandem.pipeline.sources.isolated.read_isolated` (the
persistent worker, Arrow back through a sealed memfd, validated), ``--repeat`` times each
after one warm-up, and prints the minimum wall time of each, and the minimum CPU time
(this process plus the worker: steadier than wall time on a busy machine), and the
differences. Then the same for ``--tiny`` files of 10 rows (the per-file overhead of a
back-fill).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import polars as pl

from tandem.core.contracts import ClinicContract
from tandem.core.settings import Settings
from tandem.pipeline.isolation import close_shared, shared_worker_pid
from tandem.pipeline.sources import split_notes
from tandem.pipeline.sources.isolated import read_isolated, read_stored

CONTRACT = ClinicContract(clinic_id="northside", name="N", format="canonical_csv",
                          started_on="2024-01-01", instruments=["ORS"], therapists=["T01"])


def write_csv(path: Path, rows: int) -> Path:
    i = pl.int_range(0, rows, eager=True)
    pl.DataFrame({
        "clinic_id": pl.repeat("northside", rows, eager=True),
        "client_id": pl.select(pl.format("NS-{}", i // 40)).to_series(),
        "therapist_id": pl.select(pl.format("T0{}", i % 7)).to_series(),
        "session_date": pl.select(pl.format("2025-0{}-1{}", i % 9 + 1, i % 10)).to_series(),
        "session_number": ((i // 4) % 30 + 1).cast(pl.String),
        "instrument": pl.repeat("ORS", rows, eager=True),
        "item": (i % 4 + 1).cast(pl.String),
        "score": ((i * 7) % 100 / 10).cast(pl.String),
    }).write_csv(path)
    return path


def _worker_cpu() -> float:
    pid = shared_worker_pid()
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn, repeat: int) -> tuple[float, float]:
    """(minimum wall seconds, minimum CPU seconds of this process and the worker)."""
    fn()  # warm-up: imports, the worker's start, Polars' thread pool
    wall = cpu = float("inf")
    for _ in range(repeat):
        t, c, w = time.perf_counter(), time.process_time(), _worker_cpu()
        fn()
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c + _worker_cpu() - w)
    return wall, cpu


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tiny", type=int, default=200)
    args = ap.parse_args(argv)
    settings = Settings(home=Path(tempfile.mkdtemp()))
    with tempfile.TemporaryDirectory() as tmp:
        big = write_csv(Path(tmp) / "big.csv", args.rows)
        size = big.stat().st_size

        def here():
            return split_notes(read_stored(str(big), CONTRACT, "big.csv"))

        def isolated():
            return read_isolated(big, CONTRACT, "big.csv", settings)

        assert here()[0].equals(isolated()[0])
        (w_here, c_here), (w_iso, c_iso) = timed(here, args.repeat), timed(isolated,
                                                                             args.repeat)
        print(f"{args.rows:,} rows ({size / 1e6:.0f} MB): wall in process "
              f"{w_here * 1000:.0f} ms, isolated {w_iso * 1000:.0f} ms "
              f"({(w_iso - w_here) * 1000:+.0f} ms); CPU {c_here * 1000:.0f} ms, "
              f"{c_iso * 1000:.0f} ms ({(c_iso - c_here) * 1000:+.0f} ms) "
              f"[load {os.getloadavg()[0]:.1f}]")
        tiny = [write_csv(Path(tmp) / f"t{i}.csv", 10) for i in range(args.tiny)]

        def many(fn):
            return lambda: [fn(p) for p in tiny]

        n = len(tiny)
        w_here, _ = timed(many(lambda p: read_stored(str(p), CONTRACT, p.name)), 3)
        w_iso, _ = timed(many(lambda p: read_isolated(p, CONTRACT, p.name, settings)), 3)
        # (no CPU figure here: the worker is replaced every 500 reads, its counters with it)
        print(f"{n} files of 10 rows, per file: wall in process {w_here / n * 1000:.2f} ms, "
              f"isolated {w_iso / n * 1000:.2f} ms ({(w_iso - w_here) / n * 1000:+.2f} ms)")
    close_shared()


if __name__ == "__main__":
    main()
