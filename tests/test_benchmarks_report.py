"""The benchmark report's honesty rules, checked without running a benchmark: a peak RSS
is never below a reading of the same process, a rate from less than half a second of
work is marked, every table says which executor flags it ran with, and the README's
prose about the results carries no number that could drift from the tables."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from benchmarks import _report, _rss, _stats, http_load, work_models
from benchmarks._machine import flags
from benchmarks._stats import MIN_WINDOW, SHORT_MARK, Summary

from wiz_executor import Settings, WorkModel

ROOT = Path(__file__).resolve().parent.parent


def _s(*values: float) -> Summary:
    return Summary.of(values)


# -- peak RSS ---------------------------------------------------------------------------


def test_peak_includes_a_reading_the_sampler_missed() -> None:
    samples = [(1.0, 100), (2.0, 150), (3.0, 120)]
    assert _rss.peak_of(samples, [200]) == 200
    assert _rss.peak_of(samples, [90]) == 150


def test_peak_counts_only_samples_inside_the_window() -> None:
    samples = [(1.0, 500), (2.0, 150), (3.0, 120), (9.0, 700)]
    assert _rss.peak_of(samples, [110], start=1.5, end=5.0) == 150
    assert _rss.peak_of([], [110, 130], start=1.5, end=5.0) == 130


def test_work_model_peak_is_never_below_the_rss_at_rest() -> None:
    # Samples that lag behind the child's own reading, as ru_maxrss did: the reported
    # peak must still reach the RSS at rest.
    mb = 2**20
    result = {
        "rss_idle_bytes": 100 * mb,
        "rss_rest_bytes": 120 * mb,
        "rest_rss_mb": 20.0,
        "t_idle": 10.0,
        "t_rest": 20.0,
    }
    lagging = [(11.0, 105 * mb), (15.0, 119 * mb), (25.0, 300 * mb)]
    row = work_models.with_peak(result, lagging)
    assert row["peak_rss_mb"] == pytest.approx(20.0)
    assert row["peak_rss_mb"] >= row["rest_rss_mb"]
    spike = work_models.with_peak(result, [*lagging, (18.0, 150 * mb)])
    assert spike["peak_rss_mb"] == pytest.approx(50.0)


def test_report_flags_a_peak_below_the_rss_at_rest() -> None:
    summary = {
        "expensive/1/POOL": {"rest_rss_mb": _s(20.1, 20.1), "peak_rss_mb": _s(19.9, 19.9)},
        "noop/1/POOL": {"rest_rss_mb": _s(13.6, 13.6), "peak_rss_mb": _s(14.3, 14.4)},
    }
    found = _report.peak_below_rest(summary)
    assert len(found) == 1
    assert "expensive/1/POOL" in found[0]


def test_rss_sampler_reads_a_live_process_and_stops() -> None:
    # It reads once as it starts, so even a window shorter than one interval has a sample.
    with _rss.RssSampler(os.getpid(), interval=60) as sampler:
        pass
    assert len(sampler.samples) == 1
    assert sampler.samples[0][1] == sampler.peak() > 0


# -- rates and their windows ----------------------------------------------------------


def test_a_rate_from_a_short_window_is_marked() -> None:
    rate = _s(290_000, 300_000)
    assert _stats.rate_cell(rate, _s(0.07, 0.9)).endswith(SHORT_MARK)
    assert _stats.rate_cell(rate, None).endswith(SHORT_MARK)
    assert _stats.rate_cell(rate, _s()).endswith(SHORT_MARK)


def test_a_rate_from_a_long_enough_window_is_not_marked() -> None:
    rate = _s(290_000, 300_000)
    assert SHORT_MARK not in _stats.rate_cell(rate, _s(MIN_WINDOW, 0.8))
    assert _stats.rate_cell(rate, _s(0.6, 0.8)) == rate.fmt(0)


def _wm_row(window: float, rest_window: float = 1.0) -> dict[str, Summary]:
    row = {metric: _s(1.0, 1.0) for metric in work_models.METRICS}
    row["peak_rss_mb"] = _s(2.0, 2.0)
    row["load_window_s"] = _s(window, window)
    row["rest_window_s"] = _s(rest_window, rest_window)
    return row


def _results(**sections: Any) -> dict[str, Any]:
    return {
        "machine": {
            "date": "2026-11-28 05:00 UTC",
            "cpu": "test",
            "cores": 2,
            "memory_gb": 1,
            "os": "Linux",
            "python": "CPython",
            "packages": {},
            "load_start": 0.0,
        },
        "mode": "quick",
        "default_work_model": "POOL",
        "reps": dict.fromkeys(sections, 2),
        "load_end": 0.0,
        "seconds": 60.0,
        **sections,
    }


def test_report_lists_every_rate_from_a_short_window() -> None:
    wm = {
        "flags": "--max-pending 1000000",
        "summary": {"noop/1/POOL": _wm_row(0.07), "noop/1/LIFETIME": _wm_row(0.6)},
    }
    ip_raw = {
        "POOL/executor": [150_000.0],
        "POOL/executor_window_s": [0.52],
        "POOL/bare": [380_000.0],
        "POOL/bare_window_s": [0.13],
        "POOL/ratio": [0.39],
    }
    ip = {
        "n": 50_000,
        "workers": 8,
        "flags": "--max-pending 500000",
        "summary": {k: Summary.of(v) for k, v in ip_raw.items()},
    }
    results = _results(work_models=wm, in_process=ip)
    found = _report.checks(results)
    assert any("noop/1/POOL: chunks_per_s" in f for f in found)
    assert not any("noop/1/LIFETIME: chunks_per_s" in f for f in found)
    assert any("POOL/bare" in f for f in found)
    assert not any("POOL/executor" in f for f in found)
    report = _report.markdown(results)
    assert "Numbers not to trust" in report
    pool_row = next(line for line in report.splitlines() if line.startswith("| 1 | POOL |"))
    assert SHORT_MARK in pool_row
    lifetime_row = next(line for line in report.splitlines() if line.startswith("| 1 | LIFETIME |"))
    assert SHORT_MARK not in lifetime_row


def test_report_says_so_when_every_window_was_long_enough() -> None:
    wm = {"flags": "defaults", "summary": {"noop/1/POOL": _wm_row(0.6)}}
    report = _report.markdown(_results(work_models=wm))
    assert "Numbers not to trust" not in report
    assert SHORT_MARK not in report


def test_http_loads_last_at_least_the_minimum_window() -> None:
    for quick in (True, False):
        for batch in http_load.BATCHES:
            assert http_load.seconds_per_load(batch, quick) >= MIN_WINDOW


def test_http_rates_count_429s_apart() -> None:
    load = {"requests": 1000, "seconds": 2.0, "rejected": 400, "chunks": 60_000}
    row = http_load.derive({**load, "e2e_seconds": 3.0}, batch=100)
    assert row["req_per_s"] == 500
    assert row["accepted_req_per_s"] == 300
    assert row["chunks_per_s"] == 30_000
    assert row["rejected_share"] == pytest.approx(0.4)
    assert row["e2e_chunks_per_s"] == 20_000
    assert (row["window_s"], row["e2e_window_s"]) == (2.0, 3.0)


# -- flags ------------------------------------------------------------------------------


def test_flags_name_what_differs_from_a_fresh_executor() -> None:
    assert flags(Settings()) == "defaults"
    assert flags(Settings(data_dir=Path("elsewhere"))) == "defaults"
    assert flags(Settings(max_pending=7, work_model=WorkModel.LIFETIME)) == (
        "--max-pending 7 --work-model lifetime"
    )
    assert flags(Settings(default_run_workers=3)) == "--run-workers 3"


def test_the_as_shipped_executor_runs_with_default_flags() -> None:
    command = http_load._command("executor", "/tmp/data")
    given = {arg for arg in command if arg.startswith("--")}
    assert given == {"--host", "--port", "--data-dir"}
    assert http_load.flags("executor") == "defaults"
    assert "--max-pending" in http_load._command("executor-queue", "/tmp/data")


def test_http_table_names_the_flags_of_each_row() -> None:
    def row(**extra: float) -> dict[str, Summary]:
        values = dict.fromkeys(http_load.METRICS, 1.0) | {"window_s": 1.0, **extra}
        return {k: _s(v, v) for k, v in values.items()}

    summary = {
        "executor/100/64": row(rejected_share=0.4),
        "bare/100/64": row(),
        "executor-queue/100/64": row(),
    }
    http = {
        "generator": "wrk",
        "stack": "uvloop + httptools",
        "seconds": {1: 2, 100: 1},
        "flags": {kind: http_load.flags(kind) for kind in http_load.VARIANTS},
        "raw": {},
        "summary": summary,
        "problems": [],
    }
    report = _report.markdown(_results(http=http))
    rows = [line for line in report.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    assert rows[0].startswith("| `defaults` | 100 | 64 |")
    assert "| 40% |" in rows[0]
    assert rows[1].startswith("| `--max-pending 2000000` | 100 | 64 |")


def test_the_front_targets_are_rows_against_the_floors_and_the_go_proxy() -> None:
    """Issue #11's targets: executor ÷ uvicorn floor against the Go proxy's bar, with
    keep-alive (as shipped and --ephemeral) and a new connection per request; p99s."""

    def row(**values: float) -> dict[str, Summary]:
        base = dict.fromkeys(http_load.METRICS, 1.0) | {"window_s": 1.0, **values}
        return {k: _s(v, v) for k, v in base.items()}

    close = http_load.CLOSE
    summary = {
        "executor/1/64": row(ratio=1.2, go_ratio=1.2 / 0.72, ratio_rsgi=0.8, p99_ms=4.0),
        "executor-ephemeral/1/64": row(ratio=1.0, go_ratio=1.0 / 0.72, ratio_rsgi=0.7),
        f"executor/1/64/{close}": row(ratio=1.9, go_ratio=1.9 / 1.5, p99_ms=12.0),
        "bare/1/64": row(),
        "bare-rsgi/1/64": row(),
        f"bare/1/64/{close}": row(),
        f"bare-rsgi/1/64/{close}": row(),
    }
    rows = {v.target: v for v in _report.verdicts({"http": {"summary": summary, "raw": {}}})}
    keep_alive = next(v for t, v in rows.items() if "as shipped" in t and "uvicorn" in t)
    assert (keep_alive.goal, keep_alive.ok) == ("≥ 1.08 (≥ 1.5x Go)", True)
    assert "(1.67x Go)" in keep_alive.measured
    ephemeral = next(v for t, v in rows.items() if "--ephemeral" in t and "uvicorn" in t)
    assert ephemeral.ok is False
    new = next(v for t, v in rows.items() if "new connection" in t and "uvicorn" in t)
    assert (new.goal, new.ok) == ("≥ 1.80 (≥ 1.2x Go)", True)
    p99s = [v.ok for t, v in rows.items() if t.startswith("AddData p99")]
    assert p99s == [True, False]
    table = _report._floors_table(summary)
    assert len([line for line in table if line.startswith("| keep-alive")]) == 2
    assert any(line.startswith("| new connection per request | as shipped") for line in table)


def _flood_summary(
    *, ratio: float, share: float, waiting_end: float, prefill: float = 100_000, batch: int = 1000
) -> dict[str, dict[str, Summary]]:
    def row(**values: float) -> dict[str, Summary]:
        base = dict.fromkeys(http_load.METRICS, 1.0) | values
        return {k: _s(v) for k, v in base.items()}  # one repetition: no spread

    return {
        http_load.flood_key("executor", batch): row(
            room_ratio_flood=ratio,
            room_ratio=ratio,
            rejected_share=share,
            waiting_end=waiting_end,
            prefill=prefill,
        ),
        # no ratio on the room side: as `Summary.of([])` of a metric no repetition had
        http_load.flood_key("executor-queue", batch): row(prefill=0.0, rejected_share=0.0)
        | {"room_ratio_flood": _s(), "room_ratio": _s()},
    }


def _full_queue_verdict(**kwargs: float) -> _report.Verdict:
    summary = _flood_summary(**kwargs)
    rows = _report.verdicts({"http": {"summary": summary, "raw": {}}})
    (verdict,) = (v for v in rows if v.target.startswith("Full queue ÷ room"))
    return verdict


def test_each_flood_batch_size_is_a_target_row_of_its_own() -> None:
    summary = _flood_summary(ratio=0.5, share=0.02, waiting_end=6_000, batch=100)
    summary |= _flood_summary(ratio=0.3, share=0.99, waiting_end=99_000, batch=1000)
    rows = _report.verdicts({"http": {"summary": summary, "raw": {}}})
    floods = [v for v in rows if v.target.startswith("Full queue ÷ room")]
    assert ["batches of 100 " in v.target for v in floods] == [True, False]
    assert ["batches of 1,000 " in v.target for v in floods] == [False, True]
    assert [v.ok for v in floods] == [None, False]


def test_the_full_queue_target_is_the_ratio_of_the_floods() -> None:
    met = _full_queue_verdict(ratio=0.95, share=0.8, waiting_end=98_000)
    assert (met.goal, met.ok) == ("≥ 0.9", True)
    assert met.measured.startswith("0.95 (80% 429s, 98% of the filled queue")
    missed = _full_queue_verdict(ratio=0.85, share=0.8, waiting_end=98_000)
    assert missed.ok is False
    assert "**missed**" in missed.row()


def test_the_full_queue_target_is_not_judged_when_the_queue_did_not_stay_full() -> None:
    # Few 429s: the flood was not refused, so it did not meet a full queue.
    few = _full_queue_verdict(ratio=1.2, share=0.05, waiting_end=98_000)
    # Enough 429s, but the queue ran down during the flood: its drain was measured.
    drained = _full_queue_verdict(ratio=1.2, share=0.8, waiting_end=6_400)
    for verdict in (few, drained):
        assert verdict.ok is None
        assert "did not stay full" in verdict.row()
    assert "5% 429s" in few.measured
    assert "6% of the filled queue still waiting" in drained.measured


def test_a_queue_run_down_by_a_third_while_refusing_is_judged() -> None:
    # One batch in flight per connection: the queue runs down some while refusals are
    # cheap, and the flood still met a full queue: refused, the queue over half full.
    verdict = _full_queue_verdict(ratio=1.04, share=0.3, waiting_end=64_000)
    assert verdict.ok is True
    assert "64% of the filled queue still waiting" in verdict.measured


def test_the_full_queue_target_needs_a_filled_queue() -> None:
    never_filled = _full_queue_verdict(ratio=1.0, share=0.5, waiting_end=0, prefill=0)
    assert never_filled.ok is None


def test_a_flood_rate_does_not_count_the_filled_queue_as_its_own() -> None:
    # A filled queue of 100,000 ran down to 10,000 while 120,000 chunks completed: only
    # the 30,000 the flood brought in count, over its 3 s.
    start = {"SUCCEEDED": 0, "WAITING": 100_000}
    end = {"SUCCEEDED": 120_000, "WAITING": 10_000}
    assert http_load.flood_rate(start, end, 3.0) == pytest.approx(10_000)
    # With room, the queue grows and nothing is taken off.
    room_end = {"SUCCEEDED": 60_000, "WAITING": 6_400}
    assert http_load.flood_rate({"SUCCEEDED": 0, "WAITING": 0}, room_end, 3.0) == 20_000


def test_the_http_section_shows_the_flood_rows() -> None:
    summary = _flood_summary(ratio=0.95, share=0.8, waiting_end=98_000)
    for row in summary.values():
        for window in ("window_s", "flood_window_s", "e2e_window_s"):
            row[window] = _s(3.0)
    http = {
        "generator": "wrk",
        "stack": "uvloop + httptools",
        "seconds": {1: 2, 100: 1},
        "flood_seconds": 3,
        "flags": {kind: http_load.flags(kind) for kind in http_load.VARIANTS},
        "raw": {},
        "summary": summary,
        "problems": [],
    }
    report = _report.markdown(_results(http=http))
    assert "The full-queue floods: batches over 64 connections for 3 s" in report
    rows = [line for line in report.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `defaults` | 1,000 | 100,000 |")
    assert "| 80% |" in rows[0]
    assert "| 98,000 |" in rows[0]
    assert rows[0].endswith("| 0.95 | 0.95 | 3.00 |")
    assert rows[1].startswith("| `--max-pending 2000000` | 1,000 | 0 |")
    assert rows[1].endswith("| - | - | 3.00 |")
    assert "Numbers not to trust" not in report


# -- README -----------------------------------------------------------------------------


def _readme_section(start: str) -> str:
    text = (ROOT / "README.md").read_text()
    begin = text.index(start)
    end = text.index("\n## ", begin)
    return text[begin:end]


def test_readme_prose_on_the_results_cites_no_number() -> None:
    # Numbers belong in the tables `make bench` writes; prose that repeats them drifts.
    for heading in (
        "### What the numbers mean for choosing a work model",
        "### What the HTTP numbers mean",
        "### The targets missed: why, and what would meet them",
    ):
        section = _readme_section(heading)
        body = section.split("\n", 1)[1]
        body = re.sub(r"\b429s?\b", "", body)  # a status code, not a measurement
        assert not re.findall(r"\d[\d,.]*", body), f"{heading} cites numbers"


def test_readme_has_the_block_a_full_run_rewrites() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(_report.README_BEGIN) == readme.count(_report.README_END) == 1
    latest = readme.index("### Latest results")
    assert latest < readme.index(_report.README_BEGIN) < readme.index("### What the numbers")


def test_a_full_run_replaces_only_the_block() -> None:
    readme = f"# T\n\nbefore\n\n{_report.README_BEGIN}\n\nold 1\n\n{_report.README_END}\n\nafter\n"
    wm = {"flags": "defaults", "summary": {"noop/1/POOL": _wm_row(0.6)}}
    block = _report.readme_block(_results(work_models=wm))
    new = _report.replace_readme_block(readme, block)
    assert new.startswith(f"# T\n\nbefore\n\n{_report.README_BEGIN}\n")
    assert new.endswith(f"{_report.README_END}\n\nafter\n")
    assert "old 1" not in new
    assert "#### 1. Work models: LIFETIME vs POOL" in new
    assert "# wiz-executor benchmarks" not in new
    assert _report.replace_readme_block(new, block) == new
    with pytest.raises(ValueError, match="block"):
        _report.replace_readme_block("no markers", block)
