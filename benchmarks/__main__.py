"""`python -m benchmarks [--quick] [--only SCENARIO,...]`: run the suite, write the report.

A full run writes `benchmarks/results/latest.md` (and `latest.json`, `work_models.png`,
`http.png`) and, when it ran every scenario, copies the report into the README's
"Latest results", so that the README's numbers are always a run's own. A quick run
(`--quick`, fewer and smaller repetitions, a few minutes) writes the same files under
`benchmarks/results/quick/`, which git ignores, and leaves the README alone, so the
committed results always come from a full run. Either prints the report at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wiz_executor import Settings

from . import (
    _machine,
    _report,
    control,
    durability,
    http_load,
    in_process,
    kept,
    memory,
    ray_bench,
    work_models,
)

RESULTS = Path(__file__).with_name("results")

SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "work_models": work_models.run,
    "http": http_load.run,
    "in_process": in_process.run,
    "memory": memory.run,
    "durability": durability.run,
    "kept": kept.run,
    "control": control.run,
    "ray": ray_bench.run,
}
REPS = {
    # scenario: (full, quick)
    "work_models": (5, 2),
    "http": (5, 2),
    "in_process": (5, 3),
    "memory": (3, 1),
    "durability": (3, 1),
    "kept": (1, 1),
    "control": (5, 2),
    "ray": (3, 1),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller run, a few minutes")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {', '.join(SCENARIOS)})",
    )
    parser.add_argument("--out", type=Path, help="where to write (default: benchmarks/results)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    # Children are started with `python -m benchmarks.…`: run from the project root.
    os.chdir(Path(__file__).resolve().parent.parent)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": _machine.describe(),
        "mode": "quick" if args.quick else "full",
        "default_work_model": Settings().work_model.value,
    }
    reps_used = {}
    for name in chosen:
        reps = reps_used[name] = REPS[name][1 if args.quick else 0]
        log(f"{name}: {reps} repetitions")
        results[name] = SCENARIOS[name](quick=args.quick, reps=reps, log=log)
    results["reps"] = reps_used
    results["load_end"] = os.getloadavg()[0]
    results["seconds"] = time.perf_counter() - started

    report = _report.markdown(results)
    (out / "latest.md").write_text(report)
    (out / "latest.json").write_text(json.dumps(_report.jsonable(results), indent=1) + "\n")
    charts = _report.charts(results, out)
    print(report)
    log(f"wrote {out / 'latest.md'}, latest.json, {', '.join(charts)}")
    if not args.quick and args.out is None and set(chosen) == set(SCENARIOS):
        readme = Path("README.md")
        block = _report.readme_block(results)
        readme.write_text(_report.replace_readme_block(readme.read_text(), block))
        log(f"wrote the report into {readme}'s Latest results")
    else:
        log("README.md not changed (only a full run of every scenario writes it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
