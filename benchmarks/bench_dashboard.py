"""Server-side render time of every dashboard page (Streamlit AppTest) against a published
snapshot of a given size. Prints JSON.

    TANDEM_HOME=/tmp/bench .venv/bin/python benchmarks/bench_dashboard.py --administrations 1000000

The snapshot is built from synthetic responses through the real ``build_marts`` and
``publish`` (tests/dashboards/synthetic.py). For each page the first render (cold: queries
run against the new snapshot) and the median of ``--repeat`` later renders (warm: per-snapshot
query cache) are reported, in seconds. Target: every page under 1 s at 1 M administrations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGES = ["overview", "practices", "alliance", "therapists", "effect_sizes", "off_track",
         "outcome_definitions", "loads", "validation", "lineage", "completeness"]
ADMINS_PER_CLIENT = 15.5  # the synthetic generator's average administrations per client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--administrations", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true",
                        help="Render against the snapshot already published in TANDEM_HOME.")
    parser.add_argument("--published-only", action="store_true",
                        help="Render the snapshot the pipeline published in TANDEM_HOME; never "
                             "build a synthetic one (at 10 M that took more than 21 GiB).")
    args = parser.parse_args()
    os.environ.setdefault("TANDEM_HOME", tempfile.mkdtemp(prefix="tandem-bench-"))
    os.environ.setdefault("TANDEM_PSEUDONYM_KEY", "bench-only-key")

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboards.auth import User
    from tandem.core import published
    from tandem.core.settings import Settings
    from tests.dashboards.synthetic import publish_synthetic

    settings = Settings()
    settings.ensure_dirs()
    build_s = None
    if args.published_only and published.current(settings) is None:
        sys.exit(f"nothing is published in {settings.home_dir}: run the aggregate first")
    if not (args.reuse or args.published_only) or published.current(settings) is None:
        t0 = time.perf_counter()
        publish_synthetic(settings, n_clients=int(args.administrations / ADMINS_PER_CLIENT))
        build_s = time.perf_counter() - t0
    snap = published.current(settings)
    info = dict(published.query_snapshot(snap, "SELECT key, value FROM publish_info",
                                         settings=settings))

    user = User("bench", "admin", "Bench", None)
    results = {}
    for page in PAGES:
        at = AppTest.from_file(str(REPO / "dashboards" / "main.py"), default_timeout=300)
        at.session_state["user"] = user
        at.run()
        at.switch_page(f"views/{page}.py")
        st.cache_data.clear()  # cold: nothing cached, the snapshot file opened anew
        st.cache_resource.clear()
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        if at.exception:
            results[page] = {"error": str(at.exception[0].message)[:200]}
            continue
        warm = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - t0)
        results[page] = {"cold_s": round(cold, 3), "warm_s": round(statistics.median(warm), 3)}
    print(json.dumps({
        "administrations_target": args.administrations,
        "administrations": int(info.get("administrations", 0)),
        "responses": int(info.get("responses", 0)),
        "tables": snap.tables,
        "build_and_publish_s": None if build_s is None else round(build_s, 1),
        "pages": results,
        "all_under_1s_warm": all(r.get("warm_s", 99) < 1 for r in results.values()),
        "all_under_1s_cold": all(r.get("cold_s", 99) < 1 for r in results.values()),
    }, indent=2))


if __name__ == "__main__":
    main()
