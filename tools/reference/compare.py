#!/usr/bin/env python3
"""Compare two occurrence documents (reference vs calstatus), file by file.

Usage:
    python3 compare.py reference.json calstatus.json [--json] [--max-details N]
                       [--ignore-reference-errors]

Both documents have the schema printed by occurrences.py:

    {"files": [{"file": str, "occurrences": [occurrence...], "error": str|null}]}

Files are matched by normalised path (os.path.normpath).  Within a file,
occurrences are matched by the key (uid, start, end) as a multiset; for each
matched pair the fields recurrence_id, all_day and summary are compared too.

A file agrees when both sides have the same error status (both failed, or both
succeeded with no missing, extra or field-differing occurrence).  The error
messages themselves are not compared.

Prints one line per file, details for differing files, and the summary line
"N files agree, M differ".  Exit status: 0 when all agree, 1 when any differ,
2 on unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections import defaultdict
from typing import Any

FIELDS = ("recurrence_id", "all_day", "summary")
KEYS = ("uid", "recurrence_id", "start", "end", "all_day", "summary")


def load(path: str) -> dict[str, dict[str, Any]]:
    """Load a document and index its files by normalised path."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise ValueError(f"{path}: expected an object with a 'files' list")
    files: dict[str, dict[str, Any]] = {}
    for entry in doc["files"]:
        if not isinstance(entry, dict) or "file" not in entry:
            raise ValueError(f"{path}: a files[] entry has no 'file'")
        key = os.path.normpath(entry["file"])
        if key in files:
            raise ValueError(f"{path}: file listed twice: {entry['file']}")
        files[key] = entry
    return files


def occ_key(o: dict[str, Any]) -> tuple:
    return (o.get("uid"), o.get("start"), o.get("end"))


def show(o: dict[str, Any]) -> str:
    rid = o.get("recurrence_id")
    return (
        f"{o.get('start')} .. {o.get('end')} uid={o.get('uid')!r}"
        f"{' all-day' if o.get('all_day') else ''}"
        f"{'' if rid is None else ' rid=' + str(rid)}"
        f" summary={o.get('summary')!r}"
    )


def schema_problems(occurrences: list) -> list[str]:
    problems = []
    for i, o in enumerate(occurrences):
        if not isinstance(o, dict):
            problems.append(f"occurrence #{i} is not an object")
            continue
        missing = [k for k in KEYS if k not in o]
        if missing:
            problems.append(f"occurrence #{i} lacks {', '.join(missing)}")
    return problems


def compare_occurrences(ref: list, cal: list):
    """Return (matched, missing, extra, field_diffs)."""
    by_key_ref: dict[tuple, list] = defaultdict(list)
    by_key_cal: dict[tuple, list] = defaultdict(list)
    for o in ref:
        by_key_ref[occ_key(o)].append(o)
    for o in cal:
        by_key_cal[occ_key(o)].append(o)
    matched = 0
    missing: list = []
    extra: list = []
    field_diffs: list = []
    for key in sorted(set(by_key_ref) | set(by_key_cal), key=_sortable):
        r_list = list(by_key_ref.get(key, []))
        c_list = list(by_key_cal.get(key, []))
        # pair identical occurrences first, then the rest in order
        pairs = []
        for r in list(r_list):
            for c in c_list:
                if all(r.get(f) == c.get(f) for f in FIELDS):
                    pairs.append((r, c))
                    r_list.remove(r)
                    c_list.remove(c)
                    break
        while r_list and c_list:
            pairs.append((r_list.pop(0), c_list.pop(0)))
        missing.extend(r_list)
        extra.extend(c_list)
        for r, c in pairs:
            matched += 1
            diffs = {f: (r.get(f), c.get(f)) for f in FIELDS if r.get(f) != c.get(f)}
            if diffs:
                field_diffs.append((r, diffs))
    return matched, missing, extra, field_diffs


def _sortable(key: tuple) -> tuple:
    uid, start, end = key
    return (str(start), str(end), "" if uid is None else str(uid))


def compare(ref_files, cal_files, ignore_reference_errors: bool):
    """Yield one result dict per file."""
    for path in sorted(set(ref_files) | set(cal_files)):
        r = ref_files.get(path)
        c = cal_files.get(path)
        result: dict[str, Any] = {
            "file": (r or c)["file"],
            "status": "agree",
            "matched": 0,
            "missing": [],
            "extra": [],
            "field_diffs": [],
            "notes": [],
        }
        if r is None:
            result["status"] = "differ"
            result["notes"].append("file only in calstatus output")
        elif c is None:
            result["status"] = "differ"
            result["notes"].append("file missing from calstatus output")
        elif r.get("error") is not None or c.get("error") is not None:
            r_err, c_err = r.get("error"), c.get("error")
            if r_err is not None and c_err is not None:
                result["notes"].append(f"both failed: reference: {r_err} | calstatus: {c_err}")
            elif r_err is not None:
                n = len(c.get("occurrences") or [])
                result["notes"].append(
                    f"reference failed ({r_err}); calstatus succeeded with {n} occurrence(s)"
                )
                result["status"] = "skipped" if ignore_reference_errors else "differ"
            else:
                n = len(r.get("occurrences") or [])
                result["notes"].append(
                    f"calstatus failed ({c_err}); reference has {n} occurrence(s)"
                )
                result["status"] = "differ"
        else:
            ref_occ = r.get("occurrences") or []
            cal_occ = c.get("occurrences") or []
            problems = schema_problems(cal_occ)
            if problems:
                result["notes"].extend(f"calstatus schema: {p}" for p in problems[:5])
                result["status"] = "differ"
            matched, missing, extra, field_diffs = compare_occurrences(ref_occ, cal_occ)
            result.update(
                matched=matched, missing=missing, extra=extra, field_diffs=field_diffs
            )
            if missing or extra or field_diffs:
                result["status"] = "differ"
        yield result


def print_text(results: list, max_details: int, out=sys.stdout) -> None:
    for res in results:
        counts = (
            f"matched={res['matched']} missing={len(res['missing'])} "
            f"extra={len(res['extra'])} field-diffs={len(res['field_diffs'])}"
        )
        label = {"agree": "OK  ", "differ": "DIFF", "skipped": "SKIP"}[res["status"]]
        print(f"{label} {res['file']}  {counts}", file=out)
        for note in res["notes"]:
            print(f"     note: {note}", file=out)
        if res["status"] == "agree":
            continue
        shown = 0
        for title, items in (
            ("missing in calstatus", res["missing"]),
            ("extra in calstatus", res["extra"]),
        ):
            for o in items:
                if shown >= max_details:
                    break
                print(f"     {title}: {show(o)}", file=out)
                shown += 1
        for o, diffs in res["field_diffs"]:
            if shown >= max_details:
                break
            d = "; ".join(f"{f}: reference={a!r} calstatus={b!r}" for f, (a, b) in diffs.items())
            print(f"     field differs: {show(o)} -> {d}", file=out)
            shown += 1
        total = len(res["missing"]) + len(res["extra"]) + len(res["field_diffs"])
        if total > shown:
            print(f"     ... {total - shown} more", file=out)


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under | head
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference")
    parser.add_argument("calstatus")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--max-details", type=int, default=20, help="per file (text)")
    parser.add_argument(
        "--ignore-reference-errors",
        action="store_true",
        help="a file the reference failed on but calstatus read counts as skipped, "
        "not as a difference",
    )
    parser.add_argument("--quiet", action="store_true", help="only differing files and summary")
    args = parser.parse_args(argv)
    try:
        ref_files = load(args.reference)
        cal_files = load(args.calstatus)
    except (OSError, ValueError) as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 2
    results = list(compare(ref_files, cal_files, args.ignore_reference_errors))
    agree = sum(r["status"] == "agree" for r in results)
    differ = sum(r["status"] == "differ" for r in results)
    skipped = sum(r["status"] == "skipped" for r in results)
    summary = f"{agree} files agree, {differ} differ"
    if skipped:
        summary += f" ({skipped} skipped: reference failed)"
    if args.json:
        json.dump(
            {
                "agree": agree,
                "differ": differ,
                "skipped": skipped,
                "files": [
                    {**r, "field_diffs": [{"occurrence": o, "diffs": d} for o, d in r["field_diffs"]]}
                    for r in results
                ],
            },
            sys.stdout,
            indent=1,
            ensure_ascii=False,
        )
        print()
        print(summary, file=sys.stderr)
    else:
        shown = [r for r in results if r["status"] != "agree"] if args.quiet else results
        print_text(shown, args.max_details)
        print(summary)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
