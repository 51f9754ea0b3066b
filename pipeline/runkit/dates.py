"""Dates a message names: the year, month and day parts a date field may be built from.

A date field (a json task's `date_fields`, format "date") decodes under a pattern made of
the parts its message names (date_pattern), so a 4-bit student cannot write 2026-12-22 for
"2 December 2026". The words per language are data (DATE_WORDS). Shipped in bundles
(runkit): standard library only.

Example:
    >>> from pipeline.runkit.dates import date_parts, date_pattern
    >>> date_parts("deliver on the 3rd of March 2026")
    ({2026}, {3}, {3})
    >>> print(date_pattern("Sept 30"))
    ^\\d{4}-(09)-(30)$
"""

from __future__ import annotations

import difflib
import re
from itertools import pairwise
from typing import Any

# Date fields (format "date") whose year, month and day are read in the message (the task's
# date_fields): named under this key, like COPY_KEY.
DATE_KEY = "date_parts"
# The words a message writes dates with, one table per language (ISO 639-1 code). Every
# table is read: a month named in any of them is a month. English only so far: the date
# grammar narrows a date to what the message names, and a language without a table leaves
# the parts it cannot read free (any valid value) — never wrong, only less narrowed.
DATE_WORDS: dict[str, dict[str, Any]] = {
    "en": {
        "months": ("january", "february", "march", "april", "may", "june", "july", "august",
                   "september", "october", "november", "december"),
        # 1..19 as cardinals and ordinals; tens that combine with a following 1..9
        # ("twenty-second" 22, "twenty twenty-six" the year 2026)
        "cardinals": ("one two three four five six seven eight nine ten eleven twelve thirteen "
                      "fourteen fifteen sixteen seventeen eighteen nineteen").split(),
        "ordinals": ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh "
                     "twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
                     "nineteenth").split(),
        "tens": {"twenty": 20, "twentieth": 20, "thirty": 30, "thirtieth": 30},
    },
}
MONTHS: tuple[tuple[str, ...], ...] = tuple(t["months"] for t in DATE_WORDS.values())
NUMBER_WORDS: dict[str, int] = {
    word: value for t in DATE_WORDS.values()
    for word, value in [*((w, i + 1) for words in (t["cardinals"], t["ordinals"])
                          for i, w in enumerate(words)), *t["tens"].items()]}
# a numeric date: 17/04/2026, 30.06.2026, 2026-05-11, 2026/09/18 (not 554-2210, 4410-22)
NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,4})([./-])(\d{1,2})\2(\d{2,4})(?!\d)")
DAY_GAP = 8  # characters between a day and its month: "12th of march", "March the 4th"
FREE_PARTS = (r"\d{4}", "(0[1-9]|1[0-2])", "(0[1-9]|[12][0-9]|3[01])")  # year, month, day


def _month(word: str) -> int | None:
    """1..12 for a month's name, abbreviation or misspelling ("Sept", "febuary"), else None."""
    for number, name in ((n, name) for months in MONTHS for n, name in enumerate(months, 1)):
        if word == name or word == name[:3] or (len(word) >= 4 and name.startswith(word)) or (
                word[:3] == name[:3] and difflib.SequenceMatcher(None, word, name).ratio() >= 0.8):
            return number
    return None


def _number_words(words: list[str]) -> list[tuple[int, int, int]]:
    """(value, index of its first word, of its last) of the numbers written in words:
    "twenty-second" 22."""
    out, i = [], 0
    while i < len(words):
        value = NUMBER_WORDS.get(words[i])
        if value is not None:
            start = i
            if value in (20, 30) and i + 1 < len(words) and NUMBER_WORDS.get(words[i + 1], 99) < 10:
                i += 1
                value += NUMBER_WORDS[words[i]]
            out.append((value, start, i))
        i += 1
    return out


def _numeric_dates(text: str) -> list[tuple[int, set[int], set[int]]]:
    """(year, its possible months, its possible days) of each numeric date: y-m-d, or d/m/y
    and m/d/y (both orders kept); a phone or account number shaped like one (555-12-34) is
    none."""
    out = []
    for m in NUMERIC_DATE.finditer(text):
        a, b, c = m.group(1), m.group(3), m.group(4)
        if len(a) == 4:
            year, months, days = int(a), {int(b)}, [int(c)]
        elif len(a) <= 2 and len(c) != 3:
            year, months, days = int(c) + (2000 if len(c) == 2 else 0), {int(a), int(b)}, [int(a), int(b)]
        else:
            continue
        months = {x for x in months if 1 <= x <= 12}
        if 1900 <= year <= 2199 and months and all(1 <= d <= 31 for d in days):
            out.append((year, months, set(days)))
    return out


def _close(between: str) -> bool:
    """Whether a number and a month are one date: a few characters apart, no other number
    between ("March 4", "the 12th of march"; not the 3 of "March 2026, 3 boxes")."""
    return len(between) <= DAY_GAP and not any(c.isdigit() for c in between)


def _days(low: str, words: list[tuple[str, int, int]], named: list[tuple[int, int, int]],
          spelled: list[tuple[int, int, int]]) -> set[int]:
    """The numbers 1..31 of the message (digits, ordinals, words) that may be a day: those
    next to a month's name ("30 January", "the 12th of march", "June 4") when there are any,
    else all of them (the student copied a count, "qty: 5", into "30 January"'s day)."""
    found = [(int(m.group(1)), m.start(), m.end())
             for m in re.finditer(r"(?<!\d)(\d{1,2})(?:st|nd|rd|th)?(?!\d)", low)]
    found += [(v, words[i][1], words[j][2]) for v, i, j in spelled]
    found = [(v, a, b) for v, a, b in found if 1 <= v <= 31]
    near = {v for v, a, b in found for _, start, end in named
            if (b <= start and _close(low[b:start])) or (end <= a and _close(low[end:a]))}
    return near or {v for v, _, _ in found}


def date_parts(message: str) -> tuple[set[int], set[int], set[int]]:
    """The years, months and days the message names: a month by name or in a numeric date;
    its days (numbers 1..31, in digits or words: _days) only when a month is named; a year as
    four digits shortly after a month's name, in a numeric date, or in words ("twenty
    twenty-six")."""
    low = message.lower()
    words = [(m.group(), m.start(), m.end()) for m in re.finditer(r"[^\W\d_]+", low)]
    named = [(n, start, end) for w, start, end in words if len(w) >= 3 and (n := _month(w))]
    years, months = set(), {n for n, _, _ in named}
    numeric_days: set[int] = set()
    for year, possible, days in _numeric_dates(low):
        years.add(year)
        months |= possible
        numeric_days |= days
    for m in re.finditer(r"(?<!\d)(\d{4})(?!\d)", low):  # "3 February 2026", "June 29, 2026"
        if any(0 <= m.start() - end <= 24 for _, _, end in named):
            years.add(int(m.group(1)))
    spelled = _number_words([w for w, _, _ in words])
    in_words = [(x, y) for x, y in pairwise(spelled)  # "twenty twenty-six": a year, no day
                if x[0] in (19, 20) and y[1] == x[2] + 1 and 10 <= y[0] <= 99]
    years |= {100 * x[0] + y[0] for x, y in in_words}
    spelled = [n for n in spelled if not any(n in pair for pair in in_words)]
    days = numeric_days | (_days(low, words, named, spelled) if named else set())
    return {y for y in years if 1900 <= y <= 2199}, months, days


def date_pattern(message: str) -> str:
    """A date field's pattern for one message: YYYY-MM-DD built from the parts it names; a
    part it does not name stays free (any valid value)."""
    parts = [f"({'|'.join(f'{v:0{n}d}' for v in sorted(vals))})" if vals else free
             for vals, n, free in zip(date_parts(message), (4, 2, 2), FREE_PARTS, strict=True)]
    return "^" + "-".join(parts) + "$"
