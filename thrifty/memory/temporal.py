"""Dates made absolute: session timestamps parsed, relative phrases resolved against them.

Why: a remembered turn says "I went to the support group yesterday"; a question asks *when*. Once stored,
"yesterday" has lost its anchor, so every turn is written with its session's date and each relative phrase
gets its absolute date beside it, raw text kept: ``yesterday (7 May 2023)``. Rules only (LoCoMo's 321
temporal questions are mostly "yesterday", "last week", "N years ago" and weekdays); an ambiguous phrase is
left as it was.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

__all__ = ["event_day", "format_day", "parse_when", "resolve_relative"]

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ]
    )
}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "a couple of": 2,
    "a few": 3,
    "few": 3,
    "several": 3,
}

# "1:56 pm on 8 May, 2023" (LoCoMo)
_LOCOMO = re.compile(r"(\d{1,2}):(\d{2})\s*([ap]m)\s+on\s+(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})", re.I)
# "2023/05/21 (Sun) 00:53" (LongMemEval)
_LME = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})(?:\s*\([A-Za-z]+\))?(?:\s+(\d{1,2}):(\d{2}))?")


def parse_when(text: str | None) -> datetime | None:
    """A timestamp from LoCoMo's, LongMemEval's or ISO 8601 form (UTC when no zone is given); None if blank.

    Raises ValueError on text that is none of these.
    """
    if text is None or not str(text).strip():
        return None
    raw = str(text).strip()
    if m := _LOCOMO.fullmatch(raw):
        hour, minute, half, day, month, year = m.groups()
        mon = _MONTHS.get(month.lower())
        if mon is None:
            raise ValueError(f"unknown month {month!r} in {raw!r}")
        h = int(hour) % 12 + (12 if half.lower() == "pm" else 0)
        return datetime(int(year), mon, int(day), h, int(minute), tzinfo=UTC)
    if m := _LME.fullmatch(raw):
        year, month, day, hour, minute = m.groups()
        return datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"unreadable date {raw!r}: use ISO 8601 (2023-05-08T13:56), '1:56 pm on 8 May, 2023' or "
            "'2023/05/08 (Mon) 13:56'"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_day(day: date) -> str:
    """``7 May 2023`` (the form LoCoMo's gold answers use)."""
    return f"{day.day} {day.strftime('%B')} {day.year}"


def _shift_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, 28))


def _ago(n: int, unit: str, anchor: date) -> str:
    unit = unit.rstrip("s")
    if unit == "day":
        return format_day(anchor - timedelta(days=n))
    if unit == "week":
        return "the week of " + format_day(anchor - timedelta(weeks=n))
    if unit == "month":
        shifted = _shift_months(anchor, -n)
        return f"{shifted.strftime('%B')} {shifted.year}"
    return str(anchor.year - n)


def _last_weekday(name: str, anchor: date) -> date:
    back = (anchor.weekday() - _WEEKDAYS.index(name)) % 7 or 7
    return anchor - timedelta(days=back)


_NUM = "|".join(sorted((re.escape(k) for k in _NUMBERS), key=len, reverse=True))
# The longer phrases first: "the day before yesterday" is not "yesterday" (an earlier match keeps its span).
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(the day before yesterday)\b", re.I), "day_before"),
    (re.compile(r"\b(the day after tomorrow)\b", re.I), "day_after"),
    (re.compile(r"\b(yesterday|last night)\b", re.I), "yesterday"),
    (re.compile(r"\b(today|tonight|this morning|this afternoon|this evening)\b", re.I), "today"),
    (re.compile(r"\b(tomorrow)\b", re.I), "tomorrow"),
    (re.compile(r"\b(last|past) (week|weekend)\b", re.I), "last_week"),
    (re.compile(r"\b(next) (week|weekend)\b", re.I), "next_week"),
    (re.compile(r"\b(last|past|next|this) (month|year)\b", re.I), "month_year"),
    (re.compile(rf"\b(\d+|{_NUM}) (days?|weeks?|months?|years?) ago\b", re.I), "ago"),
    (re.compile(r"\b(last) (" + "|".join(_WEEKDAYS) + r")\b", re.I), "weekday"),
]


_DAY_SHIFT = {"day_before": -2, "yesterday": -1, "today": 0, "tomorrow": 1, "day_after": 2}


def _absolute(kind: str, m: re.Match[str], anchor: date) -> str | None:
    if kind in _DAY_SHIFT:
        return format_day(anchor + timedelta(days=_DAY_SHIFT[kind]))
    if kind == "last_week":
        return f"the {m.group(2).lower()} before {format_day(anchor)}"
    if kind == "next_week":
        return f"the {m.group(2).lower()} after {format_day(anchor)}"
    if kind == "month_year":
        step = {"last": -1, "past": -1, "next": 1, "this": 0}[m.group(1).lower()]
        if m.group(2).lower() == "year":
            return str(anchor.year + step)
        shifted = _shift_months(anchor, step)
        return f"{shifted.strftime('%B')} {shifted.year}"
    if kind == "ago":
        word = m.group(1).lower()
        n = int(word) if word.isdigit() else _NUMBERS.get(word)
        return None if n is None else _ago(n, m.group(2).lower(), anchor)
    if kind == "weekday":
        return format_day(_last_weekday(m.group(2).lower(), anchor))
    return None


def resolve_relative(text: str, when: datetime | None) -> str:
    """``text`` with each relative date phrase followed by its absolute date in parentheses.

    >>> resolve_relative("I went to the group yesterday.", datetime(2023, 5, 8, tzinfo=UTC))
    'I went to the group yesterday (7 May 2023).'
    """
    if when is None:
        return text
    anchor = when.date()
    spans: list[tuple[int, int, str]] = []
    for pattern, kind in _RULES:
        for m in pattern.finditer(text):
            if any(s < m.end() and m.start() < e for s, e, _ in spans):
                continue
            absolute = _absolute(kind, m, anchor)
            if absolute:
                spans.append((m.start(), m.end(), absolute))
    for _start, end, absolute in sorted(spans, reverse=True):
        text = f"{text[:end]} ({absolute}){text[end:]}"
    return text


def _day_of(kind: str, m: re.Match[str], anchor: date) -> date | None:
    """The day a relative phrase names, when it names one day (None for weeks, months, years)."""
    if kind in _DAY_SHIFT:
        return anchor + timedelta(days=_DAY_SHIFT[kind])
    if kind == "weekday":
        return _last_weekday(m.group(2).lower(), anchor)
    if kind == "ago" and m.group(2).lower().startswith("day"):
        word = m.group(1).lower()
        n = int(word) if word.isdigit() else _NUMBERS.get(word)
        return None if n is None else anchor - timedelta(days=n)
    return None


def event_day(text: str, when: datetime | None) -> date | None:
    """The day the first relative phrase of ``text`` names ("yesterday", "two days ago", "last Friday"),
    against ``when``; None when there is none, or it names no single day ("last week", "4 years ago").

    >>> event_day("I adopted a cat two days ago.", datetime(2023, 6, 9, tzinfo=UTC))
    datetime.date(2023, 6, 7)
    """
    if when is None:
        return None
    found: list[tuple[int, date | None]] = []
    for pattern, kind in _RULES:
        m = pattern.search(text)
        if m:
            found.append((m.start(), _day_of(kind, m, when.date())))
    return min(found, key=lambda pair: pair[0])[1] if found else None
