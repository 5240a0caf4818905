#!/usr/bin/env python3
"""Time recurring-ical-events on every .ics file under a directory.

Usage:
    python3 bench.py DIR --from 2026-11-27T00:00:00Z --to 2026-12-04T00:00:00Z \
        --timezone Europe/Lisbon [--repeat N]

For each file (found as occurrences.py finds them) one timed unit is:
read the bytes, icalendar.Calendar.from_ical(data, multiple=True) (via
occurrences.parse_calendars), and for
each calendar in it recurring_ical_events.of(cal).between(from, to),
materialising the returned list.  The clock is time.perf_counter(); the
process's CPU time (time.process_time(), user + system) is measured beside it.
Interpreter start-up and imports are not in total_seconds (reported apart as
import_seconds).  A file that fails still counts, with the time it took to fail.

Prints one JSON line:
  {"tool": "recurring-ical-events", "versions": {...}, "dir": ..., "from": ...,
   "to": ..., "timezone": ..., "files": N, "files_ok": N, "files_failed": N,
   "occurrences": N, "repeat": N, "total_seconds": best run,
   "runs_seconds": [...], "mean_ms_per_file": best run / files * 1000,
   "cpu_seconds": CPU of the best run, "mean_cpu_ms_per_file": ...,
   "import_seconds": ...}
"""

from __future__ import annotations

import time

_T_IMPORT = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
import zoneinfo  # noqa: E402
from importlib.metadata import version  # noqa: E402

import recurring_ical_events  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from occurrences import parse_calendars, parse_instant, walk  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _T_IMPORT


def tzdata_in_use() -> str:
    """Which IANA tz database zoneinfo reads: the system one wins over the
    tzdata package (zoneinfo.TZPATH is searched first)."""
    for root in zoneinfo.TZPATH:
        if os.path.exists(os.path.join(root, "Europe", "Lisbon")):
            try:
                with open(os.path.join(root, "tzdata.zi"), encoding="ascii") as f:
                    first = f.readline().strip()  # "# version 2025b"
                return f"{root} ({first.split()[-1]})"
            except OSError:
                return root
    try:
        import tzdata  # noqa: PLC0415

        return f"tzdata package ({tzdata.IANA_VERSION})"
    except ImportError:
        return "unknown"


def expand_one(path: str, start, stop) -> int:
    """The timed unit: read, parse, expand.  Returns the occurrence count."""
    with open(path, "rb") as f:
        data = f.read()
    count = 0
    # as occurrences.py: Calendar.from_ical(data, multiple=True), every file
    # with a fresh VTIMEZONE cache
    for calendar in parse_calendars(data):
        count += len(list(recurring_ical_events.of(calendar).between(start, stop)))
    return count


def run_once(files, start, stop):
    occurrences = ok = failed = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for path in files:
        try:
            occurrences += expand_one(path, start, stop)
            ok += 1
        except Exception:  # noqa: BLE001 - counted, as occurrences.py reports it
            failed += 1
    return time.perf_counter() - t0, time.process_time() - c0, occurrences, ok, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", nargs="+", metavar="DIR")
    parser.add_argument("--from", dest="start", required=True, type=parse_instant)
    parser.add_argument("--to", dest="stop", required=True, type=parse_instant)
    parser.add_argument("--timezone", required=True)
    parser.add_argument("--repeat", type=int, default=1, help="runs; the best is reported")
    args = parser.parse_args(argv)
    tz = zoneinfo.ZoneInfo(args.timezone)
    warnings.simplefilter("ignore")
    files = walk(args.dir)
    # same query bounds as occurrences.py: the window expressed in --timezone
    start, stop = args.start.astimezone(tz), args.stop.astimezone(tz)
    runs = []
    cpus = []
    for _ in range(max(1, args.repeat)):
        seconds, cpu, occurrences, ok, failed = run_once(files, start, stop)
        runs.append(seconds)
        cpus.append(cpu)
    best = min(runs)
    best_cpu = cpus[runs.index(best)]
    print(
        json.dumps(
            {
                "tool": "recurring-ical-events",
                "versions": {
                    "python": sys.version.split()[0],
                    "recurring-ical-events": version("recurring-ical-events"),
                    "icalendar": version("icalendar"),
                    "x-wr-timezone": version("x-wr-timezone"),
                    "python-dateutil": version("python-dateutil"),
                    "tz_database": tzdata_in_use(),
                },
                "dir": args.dir if len(args.dir) > 1 else args.dir[0],
                "from": args.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "to": args.stop.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "timezone": args.timezone,
                "files": len(files),
                "files_ok": ok,
                "files_failed": failed,
                "occurrences": occurrences,
                "repeat": len(runs),
                "total_seconds": round(best, 6),
                "runs_seconds": [round(r, 6) for r in runs],
                "mean_ms_per_file": round(best / len(files) * 1000, 4) if files else None,
                "cpu_seconds": round(best_cpu, 6),
                "mean_cpu_ms_per_file": round(best_cpu / len(files) * 1000, 4) if files else None,
                "import_seconds": round(IMPORT_SECONDS, 6),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
