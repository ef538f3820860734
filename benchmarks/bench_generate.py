"""Benchmark ``tandem generate``: time and peak memory for a named size.

    python benchmarks/bench_generate.py --size small|reference|large [--workers N] [--keep DIR]

Generation runs in a child process (as ``tandem generate`` would); memory is measured
from the OS: the peak of the summed resident set of the child and its worker processes,
sampled from /proc, and the largest single process's peak from ``getrusage``. Prints one
JSON object. ``large`` is the documented 10-million-administration setting.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import tree_rss_kib

SIZES = {
    "small": {"scale": 1.0},  # the default demo set
    "reference": {"scale": 30.0},  # about 330,000 administrations
    "large": {"scale": 960.0},  # about 10 million administrations
}

CHILD = """
import sys
from pathlib import Path
from tandem.synth import GenerateOptions, generate
r = generate(GenerateOptions(out=Path(sys.argv[1]), seed=int(sys.argv[2]),
                             scale=float(sys.argv[3]), workers=int(sys.argv[4])))
print(r.administrations, r.files, r.faults)
"""


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(size: str, workers: int, seed: int, keep: Path | None) -> dict:
    scale = SIZES[size]["scale"]
    out = keep or Path(tempfile.mkdtemp(prefix=f"tandem-bench-{size}-"))
    if keep and keep.exists():
        shutil.rmtree(keep)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), str(seed), str(scale), str(workers)],
        stdout=subprocess.PIPE, text=True)
    peak_tree = 0
    while proc.poll() is None:
        peak_tree = max(peak_tree, tree_rss_kib(proc.pid))
        time.sleep(0.1)
    stdout = proc.stdout.read() if proc.stdout else ""
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"generation failed with exit code {proc.returncode}")
    administrations, files, faults = (int(x) for x in stdout.split())
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and its workers
    result = {
        "benchmark": "generate",
        "size": size,
        "scale": scale,
        "seed": seed,
        "workers": workers,
        "administrations": administrations,
        "files": files,
        "faults": faults,
        "bytes_written": _dir_bytes(out),
        "seconds": round(seconds, 2),
        # CPU time of the generator and its workers: comparable on a busy machine
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 1),
        "administrations_per_second": round(administrations / seconds),
        "peak_rss_mib_total": round(peak_tree / 1024, 1),
        "peak_rss_mib_largest_process": round(usage.ru_maxrss / 1024, 1),
        "cpus": os.cpu_count(),
    }
    if keep is None:
        shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", type=Path, default=None, help="generate here and keep it")
    args = ap.parse_args()
    print(json.dumps(run(args.size, args.workers, args.seed, args.keep), indent=1))


if __name__ == "__main__":
    main()
