"""Cron expressions as Prefect schedules them: a check that needs no Prefect import (the
library does not depend on the orchestrator)."""
from __future__ import annotations

import re

CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()
# (field, lowest, highest, names counted from the lowest): the five fields in order
CRON_FIELDS = (("minute", 0, 59, []), ("hour", 0, 23, []), ("day of month", 1, 31, []),
               ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))
_CRON_ITEM = re.compile(r"^(\*|(\w+)(?:-(\w+))?)(?:/(\d+))?$")
CRON_ALLOWED = ("'none' (no schedule), a macro (" + ", ".join(CRON_MACROS) + ") or five fields "
                "'minute hour day-of-month month day-of-week' of numbers, names (jan, mon), "
                "*, ranges a-b, steps /n and lists a,b, e.g. '0 3 * * *'")


def _cron_value(text: str, low: int, high: int, names: list[str]) -> int | None:
    if text.lower() in names:
        return low + names.index(text.lower())
    return int(text) if text.isdigit() and low <= int(text) <= high else None


def cron_problem(expr: str) -> str | None:
    """None when ``expr`` is a cron schedule Prefect accepts (or ``none``), else what is wrong."""
    if expr == "none" or expr in CRON_MACROS:
        return None
    fields = expr.split()
    if len(fields) != 5:
        return f"{len(fields)} fields"
    for text, (name, low, high, names) in zip(fields, CRON_FIELDS):
        for item in text.split(","):
            match = _CRON_ITEM.match(item)
            if match is None:
                return f"the {name} field {text!r}"
            _, first, last, step = match.groups()
            ends = [_cron_value(v, low, high, names) for v in (first, last) if v is not None]
            if None in ends or (len(ends) == 2 and ends[0] > ends[1]) or step == "0":
                return f"the {name} field {text!r} ({name}: {low}-{high})"
    return None
