"""``flowtaskd validate --upstream-report PATH...``: what a folder of flowtask files needs.

One line per file: ``runs`` (valid here as written), ``needs X, Y (not shipped)``
(components upstream ships and flowtaskd does not: a plugin can add them), ``unknown
component X`` (neither has it), or ``error`` with the first problem and their count; then
a summary of the components the folder needs, most used first. Exit 0 when every file
runs, 1 otherwise. ``--json`` prints the same as one JSON document.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from flowtaskd.components.registry import registry
from flowtaskd.core.loader import load_document
from flowtaskd.core.migrate import needed_components
from flowtaskd.errors import FlowtaskError

__all__ = ["upstream_report"]


def _verdict(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"file": result["file"]}
    if result["valid"]:
        return {**out, "verdict": "runs", "needs": [], "unknown": []}
    try:
        data = load_document(result["file"]).data
    except FlowtaskError:
        data = None
    missing, unknown = needed_components(data, registry())
    problems = result["problems"]
    rest = [
        p
        for p in problems
        if not any(f"unknown component `{name}`" in p.message for name in missing + unknown)
    ]
    if missing and not rest:
        verdict = "needs"
    elif unknown and not rest:
        verdict = "unknown"
    else:
        verdict = "error"
    first = str(rest[0]) if rest else None
    return {
        **out,
        "verdict": verdict,
        "needs": missing,
        "unknown": unknown,
        "problems": len(rest),
        "first": first,
    }


def upstream_report(results: list[dict[str, Any]], *, json_out: bool = False) -> int:
    rows = [_verdict(r) for r in results]
    needed: Counter[str] = Counter(name for row in rows for name in row["needs"])
    counts = Counter(row["verdict"] for row in rows)
    if json_out:
        doc = {"files": rows, "needed_components": dict(needed.most_common()), **counts}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        for row in rows:
            line = f"{row['file']}: "
            if row["verdict"] == "runs":
                line += "runs"
            elif row["verdict"] == "needs":
                line += f"needs {', '.join(row['needs'])} (not shipped)"
            elif row["verdict"] == "unknown":
                line += f"unknown component {', '.join(row['unknown'])} (not upstream's either)"
            else:
                more = f" (+{row['problems'] - 1} more)" if row["problems"] > 1 else ""
                needs = f"; also needs {', '.join(row['needs'])}" if row["needs"] else ""
                line += f"error: {row['first']}{more}{needs}"
            print(line)
        total = len(rows)
        print(
            f"{counts['runs']} of {total} run as written; {counts['needs']} need components "
            f"not shipped; {counts['unknown']} use unknown components; {counts['error']} have "
            "errors"
        )
        if needed:
            listing = ", ".join(
                f"{name} ({n} file{'s' * (n > 1)})" for name, n in needed.most_common()
            )
            print(f"components needed: {listing}")
            print("a plugin adds a component: see README, 'Coming from flowtask'")
    return 0 if rows and counts["runs"] == len(rows) else 1
