"""The JSON parser of every API view (settings: DEFAULT_PARSER_CLASSES). A module of its own: DRF
reads that setting while ``rest_framework.views`` is imported, so it must not import DRF's views."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.utils import json


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "request body too large"
    default_code = "payload_too_large"


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with bounded work: the body is read up to ``DATA_UPLOAD_MAX_MEMORY_SIZE``
    (413 beyond; DRF reads the raw stream, which Django's own cap does not cover) and nesting up
    to ``MASKMILL_JSON_MAX_DEPTH`` (400 beyond, also where the decoder itself would overflow)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise PayloadTooLarge(f"JSON body over the {limit} byte limit")
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = raw.decode(encoding)
            parse_constant = json.strict_constant if self.strict else None
            data = json.loads(text, parse_constant=parse_constant)
        except RecursionError:
            raise ParseError("JSON nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise ParseError(f"JSON parse error - {exc}") from None
        check_depth(data, settings.MASKMILL_JSON_MAX_DEPTH)
        return data


def check_depth(data: Any, max_depth: int) -> None:
    """ParseError when ``data`` nests lists/objects more than ``max_depth`` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise ParseError(f"JSON nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
