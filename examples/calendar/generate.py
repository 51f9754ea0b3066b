"""Write the calendar-event example's data: train.jsonl and eval.jsonl (deterministic).

Each message asks for one event; the reference is the JSON object of `schema.json`: title,
date (ISO), start time (24 h), duration in minutes, attendees (an array: compared as a set)
and how people meet (an enum). Requests vary in style (chat, email, dictated note), date
and time formats (ordinals, month names, "3pm", "15h30"), duration wording ("half an hour",
"90 min", "1.5 hours") and distractors (room numbers, phone extensions, other dates). The
eval split uses phrasings held out from the train split.

Example:
    python examples/calendar/generate.py          # rewrites examples/calendar/*.jsonl
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

TITLES = ["budget review", "sprint planning", "design critique", "onboarding for new hires",
          "quarterly sales sync", "vendor negotiation", "roadmap workshop", "incident retro",
          "hiring committee", "customer demo", "board prep", "security training"]
PEOPLE = ["Ana", "Bo", "Priya", "Tomás", "Emeka", "Ingrid", "Yuki", "Fatima", "Liam", "Mei",
          "Jonas", "Sara", "Kwame", "Zoë"]
MODES = {"in_person": ["in room {room}", "at the office, room {room}", "face to face"],
         "video": ["on Zoom", "over video", "on a Teams call"],
         "phone": ["by phone", "on a phone call", "dial-in, ext. {ext}"]}
DURATIONS = {15: ["15 minutes", "a quarter of an hour"], 30: ["30 min", "half an hour"],
             45: ["45 minutes", "45 mins"], 60: ["1 hour", "an hour", "60 minutes"],
             90: ["90 min", "1.5 hours", "an hour and a half"], 120: ["2 hours", "two hours"]}
# (train templates, eval templates)
TEMPLATES = (
    ["Can you book a {dur} {title} with {people} on {date} at {time}, {mode}?",
     "Please schedule the {title} for {date}, {time}, {dur}. Invite {people}. We'll meet {mode}.",
     "hey - set up {title} w/ {people} {date} {time} ({dur}) {mode} thx",
     "Hi,\n\nI'd like to organise a {title} on {date} starting {time}. It should take {dur}, "
     "{mode}. Attendees: {people}.\n\nCheers"],
    ["Note to self: {title}, {date} @ {time}, {dur}, {mode}, with {people}. (Not the {other} one.)",
     "Could we get {people} together {mode} for the {title}? {date}, from {time}, roughly {dur}."],
)


def _date_text(day: dt.date, rng: random.Random, split: int) -> str:
    n = day.day
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    forms = ([day.isoformat(), f"{day:%B} {n}, {day.year}", f"{n}/{day.month}/{day.year}"]
             if split == 0 else [f"the {n}{suffix} of {day:%B} {day.year}", f"{day:%a %d %b %Y}"])
    return rng.choice(forms)


def _time_text(hour: int, minute: int, rng: random.Random, split: int) -> str:
    h12 = hour % 12 or 12
    ampm = "am" if hour < 12 else "pm"
    forms = ([f"{hour:02d}:{minute:02d}", f"{h12}:{minute:02d}{ampm}"] if minute
             else [f"{hour:02d}:00", f"{h12}{ampm}", f"{h12} {ampm}"])
    if split == 1:
        forms = [f"{hour}h{minute:02d}", f"{h12}.{minute:02d} {ampm}"]
    return rng.choice(forms)


def _event(split: int, index: int, rng: random.Random) -> dict[str, object]:
    day = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 364))
    hour, minute = rng.randint(8, 17), rng.choice([0, 0, 15, 30, 45])
    minutes = rng.choice(sorted(DURATIONS))
    people = rng.sample(PEOPLE, rng.randint(1, 3))
    mode = rng.choice(sorted(MODES))
    other = day + dt.timedelta(days=7)
    text = rng.choice(TEMPLATES[split]).format(
        title=rng.choice(TITLES), dur=rng.choice(DURATIONS[minutes]),
        people=" and ".join([", ".join(people[:-1]), people[-1]] if len(people) > 1 else people),
        date=_date_text(day, rng, split), time=_time_text(hour, minute, rng, split),
        mode=rng.choice(MODES[mode]).format(room=rng.randint(100, 499), ext=rng.randint(1000, 9999)),
        other=f"{other:%B} {other.day}")
    title = next(t for t in TITLES if t in text)
    return {"id": f"{'te'[split]}{index:04d}", "text": text,
            "event": {"title": title, "date": day.isoformat(), "start_time": f"{hour:02d}:{minute:02d}",
                      "duration_minutes": minutes, "attendees": people, "mode": mode}}


def main() -> None:
    here = Path(__file__).parent
    for split, name, count in ((0, "train", 200), (1, "eval", 60)):
        rng = random.Random(2026 + split)
        with (here / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for i in range(count):
                fh.write(json.dumps(_event(split, i, rng), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
