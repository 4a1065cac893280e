"""Numbers from the outside world (query strings, form fields, URL segments, JSON filters), parsed
one defensive way: ASCII digits only (``str.isdigit`` accepts "²" and "٣", which ``int`` then
rejects or reads), a bounded length (``int`` of thousands of digits is slow and refused by
Python), and a range that fits the database's 64-bit integer columns."""

from __future__ import annotations

import re

from django.urls import register_converter

MAX_ID = 2**63 - 1  # the largest value of a BigAutoField / bigint column
_DIGITS = re.compile(r"-?[0-9]{1,20}")


class BadNumber(ValueError):
    """A value that is not an integer in the allowed range; the message says why, for the user."""


def parse_int(value: object, minimum: int = 0, maximum: int = MAX_ID) -> int:
    """``value`` (a str of ASCII digits, or an int that is not a bool) as an int in
    ``[minimum, maximum]``; BadNumber otherwise."""
    if isinstance(value, bool):
        raise BadNumber("must be an integer, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise BadNumber(f"must be an integer between {minimum} and {maximum}")
    if not minimum <= number <= maximum:
        raise BadNumber(f"must be between {minimum} and {maximum}")
    return number


def int_or_none(value: object, minimum: int = 0, maximum: int = MAX_ID) -> int | None:
    """``parse_int`` for optional hints (a page's ``?image=``): None when absent or unusable."""
    if value in (None, ""):
        return None
    try:
        return parse_int(value, minimum, maximum)
    except BadNumber:
        return None


def parse_id(value: object) -> int:
    """A database id: 1 .. 2^63-1."""
    return parse_int(value, 1, MAX_ID)


class IdConverter:
    """``<id:pk>`` in URLs: digits that fit a bigint column. A larger number does not match the
    route (404) instead of overflowing the database driver in the view's first lookup."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError("id out of range")
        return number

    def to_url(self, value: int | str) -> str:
        return str(value)


register_converter(IdConverter, "id")
