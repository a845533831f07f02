"""Text and date normalizers shared by the source mappers. Pure, total functions."""
from __future__ import annotations

import datetime as dt
import html
import re
import unicodedata
from functools import lru_cache

# A tag starts with a letter, '/' or '!': "age <65 years and >80 years" is text, not markup.
_TAG = re.compile(r"<[A-Za-z/!?][^<>]{0,500}>")
_MATHML = re.compile(r"<(mml:)?math\b.*?</(mml:)?math>", re.DOTALL | re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_SPACES = re.compile(" {2,}")
_NAME_PARTS = re.compile(r"[\s\-.]+")
_NOTICE_SEPARATORS = re.compile(r"[\s_\-]+")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Bounded: author names repeat across a review's citers, but a run must not grow without limit.
_NAME_CACHE_SIZE = 1 << 15
# C0/C1 control characters other than whitespace, plus the Unicode bidi overrides
# that can reorder how a title is displayed in a digest.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
SEASONS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}


def clean_text(value: object) -> str | None:
    """Collapse whitespace, drop control characters, NFC-normalize. None for empty."""
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if text.isprintable():
        # The common case, without the two substitutions: printable text has no controls,
        # bidi marks or surrogates, and U+0020 is its only whitespace (tests check every
        # code point).
        if "  " in text:
            text = _SPACES.sub(" ", text)
        return text.strip() or None
    text = _CONTROL.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    return text or None


def clean_title(value: object) -> tuple[str | None, bool]:
    """A display title and whether it is a translation (PubMed wraps those in ``[...]``).

    Inline markup (``<i>``, ``<sup>``, MathML) is removed, entities are decoded,
    whitespace collapsed; the trailing period is kept as the source gives it.
    """
    if value is None:
        return None, False
    # Entities are decoded first so an escaped tag ("&lt;i&gt;") is stripped like a real one.
    text = html.unescape(str(value))
    if "<" in text:  # both patterns start with '<'
        text = _MATHML.sub(lambda m: " " + _TAG.sub(" ", m.group(0)) + " ", text)
        # Until nothing changes: removing "<i>" from "<scr<i>ipt>" leaves "<script>".
        # Each pass shortens the text, so this ends.
        while (stripped := _TAG.sub("", text)) != text:
            text = stripped
    cleaned = clean_text(text)
    if cleaned is None:
        return None, False
    translated = False
    if cleaned.startswith("[") and (cleaned.endswith("].") or cleaned.endswith("]")):
        inner = cleaned[1:].rstrip(".").rstrip("]")
        if clean_text(inner) is None:
            # "[]" or "[ ]." translates nothing: no title, so the record is quarantined
            # instead of published with an empty (or blank) one.
            return None, False
        translated = True
        cleaned = clean_text(inner + ("." if cleaned.endswith("].") else "")) or cleaned
    return cleaned, translated


def author_name(family: str | None, initials: str | None = None, given: str | None = None) -> str | None:
    """``Family Initials`` (``Xu R``) from parts; initials derived from given names if absent."""
    # Only exact str (or None) is cached: 1, 1.0 and True are equal keys with different text.
    if ((family is None or type(family) is str) and (initials is None or type(initials) is str)
            and (given is None or type(given) is str)):
        return _cached_author_name(family, initials, given)
    return _author_name(family, initials, given)


def _author_name(family: object, initials: object, given: object) -> str | None:
    family = clean_text(family)
    if not family:
        return None
    if not initials and given:
        parts = _NAME_PARTS.split(clean_text(given) or "")
        initials = "".join([p[0].upper() for p in parts if p])
    initials = clean_text(initials)
    return f"{family} {initials}" if initials else family


def author_from_display(name: str | None) -> str | None:
    """``Ruth M. Xu`` → ``Xu RM``; for sources that only give a display name."""
    if type(name) is str:
        return _cached_author_from_display(name)
    return _author_from_display(name)


def _author_from_display(name: object) -> str | None:
    name = clean_text(name)
    if not name:
        return None
    if "," in name:
        family, _, given = name.partition(",")
        return author_name(family, given=given)
    parts = name.split(" ")
    if len(parts) == 1:
        return name
    return author_name(parts[-1], given=" ".join(parts[:-1]))


_cached_author_name = lru_cache(maxsize=_NAME_CACHE_SIZE)(_author_name)
_cached_author_from_display = lru_cache(maxsize=_NAME_CACHE_SIZE)(_author_from_display)


def month_number(value: str | None) -> int | None:
    if not value:
        return None
    text = str(value).strip().lower()
    if text.isdigit():
        number = int(text)
        return number if 1 <= number <= 12 else None
    return MONTHS.get(text[:3]) or SEASONS.get(text)


def make_date(year: object, month: object = None, day: object = None) -> dt.date | None:
    """The most precise valid date from parts; missing month/day default to 1."""
    try:
        y = int(str(year).strip()[:4])
    except (TypeError, ValueError):
        return None
    m = month_number(str(month)) if month is not None else None
    try:
        d = int(str(day).strip()) if day is not None and str(day).strip().isdigit() else None
    except ValueError:
        d = None
    try:
        return dt.date(y, m or 1, d or 1)
    except ValueError:
        try:
            return dt.date(y, m or 1, 1)
        except ValueError:
            return None


def parse_iso_date(value: object) -> dt.date | None:
    """``2024-05-01``, ``2024-05`` or ``2024`` → date (partial dates default to the 1st)."""
    if value is None:
        return None
    text = str(value).strip()[:10]
    if _ISO_DATE.fullmatch(text):
        try:
            return dt.date(int(text[:4]), int(text[5:7]), int(text[8:]))
        except ValueError:
            pass  # day or month out of range: make_date falls back to the month or the year
    parts = text.split("-")
    if not parts or not parts[0].isdigit():
        return None
    return make_date(parts[0], parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None)


def medline_date(value: str | None) -> tuple[int | None, dt.date | None]:
    """Year and a date from a free-text MedlineDate such as ``1998 Dec-1999 Jan``."""
    if not value:
        return None, None
    match = re.match(r"\s*(\d{4})(?:\s+([A-Za-z]+))?", value)
    if not match:
        return None, None
    year = int(match.group(1))
    return year, make_date(year, match.group(2))


def year_of(value: object) -> int | None:
    try:
        year = int(str(value).strip()[:4])
    except (TypeError, ValueError):
        return None
    return year if 1000 <= year <= 9999 else None


# ISO 639-1 -> the ISO 639-2/B codes PubMed and Europe PMC use, for the languages
# citing papers actually come in; anything else is kept as the source gives it.
_LANG_639_2 = {
    "en": "eng", "de": "ger", "fr": "fre", "es": "spa", "pt": "por", "it": "ita", "nl": "dut",
    "zh": "chi", "ja": "jpn", "ko": "kor", "ru": "rus", "pl": "pol", "tr": "tur", "ar": "ara",
    "fa": "per", "sv": "swe", "no": "nor", "da": "dan", "fi": "fin", "cs": "cze", "hu": "hun",
    "el": "gre", "he": "heb", "id": "ind", "uk": "ukr", "ro": "rum", "hr": "hrv", "sr": "srp",
}


def normalize_language(value: object) -> str | None:
    """One vocabulary for ``language``: ISO 639-2 (``eng``) as PubMed writes it."""
    text = clean_text(value)
    if text is None:
        return None
    lowered = text.lower()
    return _LANG_639_2.get(lowered, lowered)


# Keys are lowercased with spaces, '_' and '-' removed: PubMed "RetractionIn", Europe PMC
# "Retraction in", Crossref "retraction" all land on the same kind.
_NOTICE_KINDS = {
    "retraction": "retraction", "retractionin": "retraction", "withdrawal": "retraction", "removal": "retraction",
    "correction": "correction", "correctionin": "correction", "erratum": "correction", "erratumin": "correction",
    "corrigendum": "correction", "expressionofconcern": "expression_of_concern",
    "expressionofconcernin": "expression_of_concern",
}
PREPRINT_TYPES = frozenset({"preprint", "posted-content", "posted_content"})


def notice_kind(value: object) -> str | None:
    """``retraction``, ``correction`` or ``expression_of_concern`` from any source's wording."""
    if value is None:
        return None
    key = _NOTICE_SEPARATORS.sub("", str(value)).lower()
    return _NOTICE_KINDS.get(key)


def notice(kind: str | None, ident: object = None) -> str | None:
    """An ``update_notices`` entry: ``kind`` or ``kind:<id>``."""
    if not kind:
        return None
    ident = clean_text(ident)
    return f"{kind}:{ident}" if ident else kind


def is_preprint_type(types: object) -> bool:
    return any(str(t).strip().lower() in PREPRINT_TYPES for t in (types or []))


def clean_abstract(value: object) -> str | None:
    """Abstract text without markup (JATS, HTML, MathML), whitespace collapsed."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value if v)
    text, _ = clean_title(value)
    if text and text[:9].lower() == "abstract ":
        text = text[9:]
    return text


def as_date(value: object) -> dt.date | None:
    """A date from a date, a datetime or an ISO string (first 10 characters); None otherwise."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None
