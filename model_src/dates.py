"""Date normalisation data, built offline from Babel's CLDR formats: written date -> ISO 8601.

Every example is a random date in 1950-2049 written with one pattern of one locale: CLDR's
full/long/medium/short formats, a few skeletons resolved in that locale, and common numeric
styles ("22.11.2026", "2026/11/22", "Nov 22, '26"). Two-digit years are read in 1950-2049.

All-numeric dates can be ambiguous ("03/04/26"); the data follows one documented reading:
day before month, a four-digit year first means year-month-day. Samples that the locale's
pattern would write the other way and that another reading would fit (a month-first pattern
with a day <= 12, a two-digit year first with a year <= 31) are left out.

Locales are split by name: the held-out locales are regional variants never trained on.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass

from babel import Locale
from babel.dates import format_date

from contract.chars import normalize

SOURCE = "Unicode CLDR date formats as shipped by Babel (babel.dates), generated offline"
FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)

# fmt: off
TRAIN_LOCALES = (
    "en_US", "en_GB", "en_IN", "fr", "fr_BE", "de", "de_CH", "es", "es_AR", "it", "nl", "pt",
    "pt_BR", "sv", "da", "nb", "fi", "pl", "cs", "sk", "hu", "ro", "hr", "sl", "lt", "lv", "et",
    "tr", "ru", "uk", "bg", "sr", "el", "ja", "zh", "zh_Hant", "ko", "vi", "id", "ms", "th", "hi",
    "ar", "he", "fa", "ca",
)
HELDOUT_LOCALES = (
    "en_AU", "en_CA", "fr_CA", "fr_CH", "de_AT", "es_MX", "es_CO", "it_CH", "nl_BE", "pt_PT",
    "sv_FI", "ru_UA",
)
# fmt: on

CLDR_FORMATS = ("full", "long", "medium", "short")
SKELETONS = ("yMMMd", "yMMMEd", "yMMMMd", "yMd", "yMEd", "yMMMM d", "GyMMMd")
NUMERIC = (
    "dd.MM.yyyy",
    "d.M.yyyy",
    "dd/MM/yyyy",
    "yyyy/MM/dd",
    "yyyy-MM-dd",
    "yyyy.MM.dd",
    "dd-MM-yyyy",
    "d MMM yyyy",
    "d MMMM yyyy",
    "MMM d, ''yy",
    "MMMM d, yyyy",
    "EEEE, dd.MM.yyyy",
    "EEE d MMM yyyy",
)


def locale_patterns(locale: str) -> list[str]:
    """The LDML patterns one locale contributes (deduplicated, in a fixed order)."""
    loc = Locale.parse(locale)
    patterns = [loc.date_formats[f].pattern for f in CLDR_FORMATS]
    skeletons = loc.datetime_skeletons
    patterns += [skeletons[s].pattern for s in SKELETONS if s in skeletons]
    patterns += NUMERIC
    return list(dict.fromkeys(patterns))


_FIELD = re.compile(r"'[^']*'|(y+|M+|L+|d+)")


def ambiguous(pattern: str, date: dt.date) -> bool:
    """True where an all-numeric rendering would read differently under the data's convention."""
    fields = [m.group(1) for m in _FIELD.finditer(pattern) if m.group(1)]
    if any(f[0] in "ML" and len(f) >= 3 for f in fields):
        return False  # the month is a word: nothing to confuse
    order = "".join(f[0].replace("L", "M") for f in fields)
    two_digit_year = any(f == "yy" for f in fields)
    if order.index("M") < order.index("d") and not order.startswith("y") and date.day <= 12:
        return True  # month first, e.g. 11/05/26: would read as 11 May
    if order.startswith("y") and two_digit_year and date.year % 100 <= 31:
        return True  # 05.11.22 from yy.MM.dd: would read as 5 November 2022
    return order.startswith("yd")


@dataclass(frozen=True)
class Example:
    text: str
    target: str  # ISO 8601
    locale: str


def random_date(rng: random.Random) -> dt.date:
    return FIRST + dt.timedelta(days=rng.randrange((LAST - FIRST).days + 1))


def generate(locales: list[str] | tuple[str, ...], n: int, seed: int) -> list[Example]:
    """n examples, locales and patterns drawn uniformly, dates uniformly in 1950-2049."""
    rng = random.Random(seed)
    patterns = {loc: locale_patterns(loc) for loc in locales}
    examples: list[Example] = []
    while len(examples) < n:
        locale = rng.choice(locales)
        pattern = rng.choice(patterns[locale])
        date = random_date(rng)
        if ambiguous(pattern, date):
            continue
        text = normalize(format_date(date, pattern, locale=locale))
        if rng.random() < 0.1:
            text = text.lower()
        examples.append(Example(text, date.isoformat(), locale))
    return examples


@dataclass
class DateSplits:
    train: list[Example]
    validation: list[Example]  # seen locales, dates drawn apart from train
    test_seen: list[Example]
    test_heldout: list[Example]  # locales never trained on


def build_splits(train_size: int, test_size: int, seed: int) -> DateSplits:
    return DateSplits(
        train=generate(TRAIN_LOCALES, train_size, seed),
        validation=generate(TRAIN_LOCALES, test_size, seed + 1),
        test_seen=generate(TRAIN_LOCALES, test_size, seed + 2),
        test_heldout=generate(HELDOUT_LOCALES, test_size, seed + 3),
    )
