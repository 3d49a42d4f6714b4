"""The sans-I/O layer: a `Call` says what to send and how to read the answer, without sending it.

Endpoints build Calls; `transport` sends them with httpx, sync or async. Nothing here does I/O, so the
same Call serves `Vehicle` and `AsyncVehicle`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import httpx
import pydantic
from pydantic import TypeAdapter

from smartcar_core.config import USER_AGENT
from smartcar_core.errors import UnexpectedResponseError, error_from_response
from smartcar_core.results import Meta

R = TypeVar("R")
Parser = Callable[[httpx.Response], R]


class _NoBody:
    def __repr__(self) -> str:
        return "NO_BODY"


NO_BODY: Any = _NoBody()

# Parsing a URL is half the cost of building an httpx.Request, and a service reads the same few
# vehicle URLs again and again. httpx.URL is immutable; the query is merged in per request.
_parsed_url = functools.lru_cache(maxsize=2048)(httpx.URL)


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One HTTP exchange: method, URL, query, headers, body, and the parser for a 2xx answer.

    The headers (Authorization) and the form (a code or refresh token) stay out of the repr.
    """

    method: str
    url: str
    parse: Parser[R]
    params: Sequence[tuple[str, str]] = ()
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    json: Any = NO_BODY
    form: Sequence[tuple[str, str]] | None = field(default=None, repr=False)

    def to_request(self, timeout: httpx.Timeout) -> httpx.Request:
        headers = {"user-agent": USER_AGENT, "accept": "application/json", **self.headers}
        content: bytes | None = None
        if self.form is not None:
            headers.setdefault("content-type", "application/x-www-form-urlencoded")
            content = urlencode(list(self.form)).encode()
        elif self.json is not NO_BODY:
            headers.setdefault("content-type", "application/json")
            content = json.dumps(self.json, separators=(",", ":")).encode()
        return httpx.Request(
            self.method,
            _parsed_url(self.url),
            params=list(self.params) if self.params else None,
            headers=headers,
            content=content,
            extensions={"timeout": timeout.as_dict()},
        )

    def handle(self, response: httpx.Response) -> R:
        """The parsed result of a 2xx answer; the matching `SmartcarError` for anything else."""
        if not response.is_success:
            raise error_from_response(response.status_code, response.headers, response.text)
        return self.parse(response)


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body; None for an empty body; the text when it is not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def object_body(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object body of an answer that must be one; `UnexpectedResponseError` otherwise."""
    body = json_body(response)
    if not isinstance(body, dict):
        raise invalid_response(response, what, "expected a JSON object", body)
    return body


def invalid_response(response: httpx.Response, what: str, problem: str, body: Any) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        status_code=response.status_code,
        type="SDK_ERROR",
        code="INVALID_RESPONSE",
        description=f"{what}: {problem}",
        request_id=response.headers.get("sc-request-id"),
        body=body,
    )


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """Where and why validation failed, never with the input: a token answer would put a token here."""
    parts = []
    for item in error.errors(include_input=False, include_url=False)[:3]:
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def parse_result(cls: type[R], *, list_field: str | None = None) -> Parser[R]:
    """A parser that validates the JSON body into `cls`, with `meta` from the headers.

    A JSON array body (service history) is put under `list_field`.
    """
    adapter: TypeAdapter[R] = TypeAdapter(cls)

    def parse(response: httpx.Response) -> R:
        body = json_body(response)
        if body is None:
            body = {}
        elif isinstance(body, list) and list_field is not None:
            body = {list_field: body}
        if not isinstance(body, dict):
            raise invalid_response(response, cls.__name__, "expected a JSON object", body)
        try:
            return adapter.validate_python({**body, "meta": Meta.from_headers(response.headers)})
        except pydantic.ValidationError as error:
            raise invalid_response(response, cls.__name__, describe_validation_error(error), body) from error

    return parse


def paging_params(paging: Mapping[str, Any] | None, keys: Sequence[str]) -> list[tuple[str, str]]:
    """The paging parameters the caller gave, of those the endpoint reads, in the endpoint's order."""
    return [(key, str(paging[key])) for key in keys if paging and key in paging]


def flags_param(flags: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Feature flags as Smartcar wants them: one `flags` parameter of `key:value` pairs joined by spaces."""
    if not flags:
        return []
    parts = [f"{key}:{_flag_value(value)}" for key, value in flags.items()]
    return [("flags", " ".join(parts))]


def _flag_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
