"""`travel-json`: turn a travel request into a fixed JSON object {"intent", "city", "date"}.

A small, closed domain (5 intents x 24 cities x dates of 2027, written in three styles and many phrasings) whose
answer format a 135M base model does not produce unprompted, and which a LoRA learns from a few hundred examples.
`travel-json-iso` is the easier variant: dates are always written YYYY-MM-DD, so only intent, city and format remain.
"""

from __future__ import annotations

import calendar
import random
import re
from datetime import date, datetime, timedelta

from baimo.distill.tasks import Task

INSTRUCTION = ('Convert the request to JSON with keys "intent" (one of book_flight, book_hotel, get_weather, '
               'rent_car, cancel_booking), "city" and "date" (YYYY-MM-DD). Reply with the JSON only.\nRequest: ')
CITIES = ("Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Lisbon", "Dublin", "Oslo",
          "Helsinki", "Warsaw", "Athens", "Cairo", "Nairobi", "Lima", "Toronto", "Chicago", "Boston", "Seattle",
          "Sydney", "Seoul", "Beijing")
PHRASES = {
    "book_flight": ("Book me a flight to {city} on {date}.", "I need to fly to {city} on {date}.",
                    "Can you get me a plane ticket to {city} for {date}?", "Find a flight to {city}, {date}."),
    "book_hotel": ("Reserve a hotel room in {city} on {date}.", "I need somewhere to stay in {city} on {date}.",
                   "Can you book a hotel in {city} for {date}?", "Find me a hotel in {city}, {date}."),
    "get_weather": ("What is the weather in {city} on {date}?", "Will it rain in {city} on {date}?",
                    "Tell me the forecast for {city} for {date}.", "How warm will {city} be on {date}?"),
    "rent_car": ("Rent me a car in {city} on {date}.", "I need a rental car in {city} on {date}.",
                 "Can you arrange a car hire in {city} for {date}?", "Find a car to rent in {city}, {date}."),
    "cancel_booking": ("Cancel my booking in {city} on {date}.", "Please cancel my reservation in {city} for {date}.",
                       "I want to call off my {city} trip on {date}.", "Drop my {city} booking for {date}."),
}
_START = date(2027, 1, 1)


def _written(d: date, rng: random.Random, iso_only: bool) -> str:
    style = 0 if iso_only else rng.randrange(3)
    if style == 0:
        return d.isoformat()
    if style == 1:
        return f"{calendar.month_name[d.month]} {d.day}, {d.year}"
    return f"{d.day} {calendar.month_name[d.month]} {d.year}"


def _sampler(iso_only: bool):  # noqa: ANN202 - a Task.sample
    def sample(rng: random.Random) -> tuple[str, dict[str, str]]:
        intent = rng.choice(tuple(PHRASES))
        city = rng.choice(CITIES)
        day = _START + timedelta(days=rng.randrange(365))
        sentence = rng.choice(PHRASES[intent]).format(city=city, date=_written(day, rng, iso_only))
        return INSTRUCTION + sentence, {"intent": intent, "city": city, "date": day.isoformat()}

    return sample


TASKS = (
    Task("travel-json", "travel request -> {intent, city, date} JSON (dates written three ways)",
         ("intent", "city", "date"), _sampler(iso_only=False)),
    Task("travel-json-iso", "travel request -> {intent, city, date} JSON (dates written YYYY-MM-DD)",
         ("intent", "city", "date"), _sampler(iso_only=True)),
)


def _pattern(template: str) -> re.Pattern[str]:
    text = re.escape(template).replace(r"\{city\}", "(?P<city>.+?)").replace(r"\{date\}", "(?P<date>.+?)")
    return re.compile(f"^{text}$")


_PATTERNS = [(intent, _pattern(t)) for intent, templates in PHRASES.items() for t in templates]
_DATE_FORMATS = ("%Y-%m-%d", "%B %d, %Y", "%d %B %Y")


def solve(prompt: str) -> dict[str, str] | None:
    """The right answer to a `travel-json` prompt, read back from its phrasing (what a strong teacher model would
    answer; the scripted teacher of tests and of bench/flywheel.py uses it). None when the prompt is not one of the
    task's."""
    if not prompt.startswith(INSTRUCTION):
        return None
    sentence = prompt[len(INSTRUCTION):].strip()
    for intent, pattern in _PATTERNS:
        m = pattern.match(sentence)
        if m is None or m.group("city") not in CITIES:
            continue
        for fmt in _DATE_FORMATS:
            try:
                day = datetime.strptime(m.group("date"), fmt).date()
            except ValueError:
                continue
            return {"intent": intent, "city": m.group("city"), "date": day.isoformat()}
    return None
