#!/usr/bin/env python3
"""Reference expansion of ICS files with the Python `recurring-ical-events` library.

Usage:
    python3 occurrences.py --from 2026-11-27T00:00:00Z --to 2026-12-04T00:00:00Z \
        --timezone Europe/Lisbon FILE_OR_DIR...

Prints one JSON document to stdout:

    {"files": [{"file": "<path>", "occurrences": [...], "error": null | "message"}]}

Each occurrence is

    {"uid": str|null, "recurrence_id": "YYYY-MM-DDTHH:MM:SSZ"|null,
     "start": "...Z", "end": "...Z", "all_day": bool, "summary": str|null}

sorted by (start, end, uid).  See README.md in this folder for the exact
conventions; they are implemented in `to_utc()` and `ReferenceOccurrence`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import warnings
import zoneinfo
from typing import Any, Iterable

import icalendar
import recurring_ical_events
from recurring_ical_events import ComponentsWithName, Occurrence

UTC = dt.timezone.utc

# Attribute names we stamp onto the components returned by between().
_ATTR_RID = "_calstatus_reference_recurrence_id"


# --------------------------------------------------------------------------
# Conventions
# --------------------------------------------------------------------------


def to_utc(value: dt.date | dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """Convert an iCalendar value to an aware UTC datetime.

    - DATE             -> local midnight of that day in `tz`
    - floating (naive) -> wall time interpreted in `tz`
    - aware            -> same instant

    Wall times inside a DST gap or overlap are resolved with fold=0 (Python's
    zoneinfo): a gap time takes the offset from *before* the gap (so 02:30 on a
    spring-forward night becomes 03:30 summer time), an ambiguous time takes
    the first (summer-time) occurrence.  This matches RFC 5545 section 3.3.5.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            value = value.replace(tzinfo=tz)
        return value.astimezone(UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(0, 0), tzinfo=tz).astimezone(UTC)
    raise TypeError(f"not a date or datetime: {value!r}")


def fmt(value: dt.datetime) -> str:
    """RFC 3339, UTC, second precision, with Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> dt.datetime:
    """Parse an RFC 3339 instant like 2026-11-27T00:00:00Z (offset required)."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    value = dt.datetime.fromisoformat(t)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: an instant needs a UTC offset or Z (e.g. 2026-11-27T00:00:00Z)"
        )
    return value.astimezone(UTC)


# --------------------------------------------------------------------------
# Hooking into recurring-ical-events to learn each occurrence's original start
# --------------------------------------------------------------------------


class ReferenceOccurrence(Occurrence):
    """An Occurrence that remembers its RECURRENCE-ID (original start).

    recurring_ical_events always puts a RECURRENCE-ID on the components that
    between() returns (adapters/component.py, ComponentAdapter.as_component:
    `if "RECURRENCE-ID" not in copied_component: ... = DTSTART`), even on
    non-recurring events, and for instances computed from a RANGE=THISANDFUTURE
    override it keeps the override's RECURRENCE-ID.  So we derive it here:

    - the adapter's component has RECURRENCE-ID and start was not given
      -> an override (modification): its RECURRENCE-ID value;
    - the adapter's component has a non-empty RRULE or an RDATE, or it is a THISANDFUTURE
      override acting as the base of later instances
      -> an expanded instance: original start = start - move_recurrences_by;
    - otherwise (no RRULE, no RDATE, no RECURRENCE-ID) -> non-recurring: None.
    """

    def __init__(self, adapter, start=None, end=None, sequence=-1):
        super().__init__(adapter, start, end, sequence)
        component = adapter._component  # noqa: SLF001 - the source VEVENT
        rid_prop = component.get("RECURRENCE-ID")
        if start is None:
            # Series.occurrence(adapter): a modification taken as it is.
            self.reference_rid = rid_prop.dt if rid_prop is not None else None
        elif rid_prop is not None and adapter.this_and_future:
            # an instance that a RANGE=THISANDFUTURE override moved
            self.reference_rid = _shift(start, -adapter.move_recurrences_by)
        elif adapter.rrules or adapter.rdates:
            # non-empty RRULE or RDATE: an instance of a series
            self.reference_rid = start
        elif rid_prop is not None:
            # override carrying its own RECURRENCE-ID used as a series core
            self.reference_rid = rid_prop.dt
        else:
            self.reference_rid = None

    def as_component(self, keep_recurrence_attributes):
        component = super().as_component(keep_recurrence_attributes)
        setattr(component, _ATTR_RID, self.reference_rid)
        return component


def _shift(value, delta: dt.timedelta):
    if not delta:
        return value
    if isinstance(value, dt.datetime) or not delta.seconds:
        return value + delta
    return dt.datetime.combine(value, dt.time()) + delta


def _text(component, name: str) -> str | None:
    value = component.get(name)
    if value is None:
        return None
    if isinstance(value, list):  # repeated property: take the first
        value = value[0] if value else None
        if value is None:
            return None
    return str(value)


# --------------------------------------------------------------------------
# Expansion of one file
# --------------------------------------------------------------------------


def reset_timezone_cache() -> None:
    """icalendar caches VTIMEZONE-derived zones per TZID process-wide.

    icalendar/timezone/tzp.py TZP.cache_timezone_component() stores the first
    VTIMEZONE seen for a TZID that is not an IANA name (e.g. "Customized Time
    Zone") and later files with the same TZID would reuse it.  Switching the
    provider (TZP._use) clears that cache, so each file is read on its own.
    """
    icalendar.use_zoneinfo()


def parse_calendars(data: bytes) -> list:
    """Parse the bytes of one file into its top-level components.

    multiple=True: a file with several VCALENDARs is read as all of them
    (plain Calendar.from_ical(data) raises "Found multiple components").
    A file whose top level is a bare VEVENT is passed on, as the library
    accepts it (of() walks the component itself).  An empty file (no
    component) fails as Calendar.from_ical(data) does.
    """
    reset_timezone_cache()
    components = icalendar.Calendar.from_ical(data, multiple=True)
    if not components:
        raise ValueError("Found no components where exactly one is required")
    return components


def expand_bytes(
    data: bytes,
    start: dt.datetime,
    stop: dt.datetime,
    tz: dt.tzinfo,
    skip_bad_series: bool = False,
) -> list[dict[str, Any]]:
    """Parse the bytes of one .ics file and return the occurrences."""
    components = parse_calendars(data)
    # Query with bounds expressed in the --timezone zone: the library compares
    # floating and DATE values against the query bounds by giving them the
    # bounds' tzinfo (util.make_comparable / convert_to_datetime), so this makes
    # "floating = --timezone" hold inside the library too.
    span_start = start.astimezone(tz)
    span_stop = stop.astimezone(tz)
    result = []
    for calendar in components:
        query = recurring_ical_events.of(
            calendar,
            keep_recurrence_attributes=True,
            skip_bad_series=skip_bad_series,
            components=[ComponentsWithName("VEVENT", occurrence=ReferenceOccurrence)],
        )
        for event in query.between(span_start, span_stop):
            start_value = event["DTSTART"].dt
            end_prop = event.get("DTEND")
            end_value = end_prop.dt if end_prop is not None else start_value
            rid = getattr(event, _ATTR_RID, None)
            all_day = not isinstance(start_value, dt.datetime)
            result.append(
                {
                    "uid": _text(event, "UID"),
                    "recurrence_id": None if rid is None else fmt(to_utc(rid, tz)),
                    "start": fmt(to_utc(start_value, tz)),
                    "end": fmt(to_utc(end_value, tz)),
                    "all_day": all_day,
                    "summary": _text(event, "SUMMARY"),
                }
            )
    result.sort(key=sort_key)
    return result


def sort_key(occurrence: dict[str, Any]):
    return (occurrence["start"], occurrence["end"], occurrence["uid"] or "")


def walk(paths: Iterable[str]) -> list[str]:
    """Files as given; directories walked recursively for *.ics (sorted)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in names:
                    if name.lower().endswith(".ics"):
                        found.append(os.path.join(root, name))
            files.extend(sorted(found))
        else:
            files.append(path)
    return files


def expand_file(path: str, start, stop, tz, skip_bad_series=False) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read()
        occurrences = expand_bytes(data, start, stop, tz, skip_bad_series)
    except Exception as e:  # noqa: BLE001 - every failure is reported per file
        message = f"{type(e).__name__}: {e}".strip()
        return {"file": path, "occurrences": [], "error": message[:500]}
    return {"file": path, "occurrences": occurrences, "error": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="start", required=True, type=parse_instant)
    parser.add_argument("--to", dest="stop", required=True, type=parse_instant)
    parser.add_argument("--timezone", required=True, help="IANA zone, e.g. Europe/Lisbon")
    parser.add_argument(
        "--skip-bad-series",
        action="store_true",
        help="of(..., skip_bad_series=True): drop a UID whose RRULE is unreadable "
        "(BadRuleStringFormat), whose period ends before it starts, or that "
        "icalendar calls invalid, instead of failing the whole file",
    )
    parser.add_argument("--indent", type=int, default=None, help="pretty-print JSON")
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    args = parser.parse_args(argv)
    try:
        tz = zoneinfo.ZoneInfo(args.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        parser.error(f"unknown --timezone {args.timezone!r}: {e}")
    if args.stop < args.start:
        parser.error("--to is before --from")
    warnings.simplefilter("ignore")  # e.g. GloballyUniqueTZIDGuessed
    files = [
        expand_file(p, args.start, args.stop, tz, args.skip_bad_series)
        for p in walk(args.paths)
    ]
    json.dump({"files": files}, sys.stdout, indent=args.indent, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
