"""The result of `Vehicle.batch`: each path's answer, looked up by path or by the Vehicle method name.

`result.get("/odometer")` and `result.odometer()` both return the typed `Odometer`, or raise the
item's own `SmartcarError` (with the item's `code` as its status). An item's `meta` merges the batch's
headers with the item's, the item winning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from smartcar_core.errors import SmartcarError, error_from_response
from smartcar_core.protocol import invalid_response, json_body
from smartcar_core.results import Meta, Response

ItemParser = Callable[[httpx.Response], Any]


def normalise_path(path: str) -> str:
    return "/" + path.strip("/")


@dataclass(frozen=True, slots=True)
class BatchItem:
    path: str
    code: int
    result: Any = None
    error: SmartcarError | None = None


class BatchResponse:
    def __init__(self, items: dict[str, BatchItem], names: Mapping[str, str], meta: Meta) -> None:
        self._items = items
        self._names = names  # method name -> path
        self.meta = meta

    def __repr__(self) -> str:
        return f"BatchResponse(paths={list(self._items)!r})"

    @property
    def paths(self) -> list[str]:
        return list(self._items)

    @property
    def items(self) -> list[BatchItem]:
        return list(self._items.values())

    def get(self, path: str) -> Any:
        """The result for `path` (leading slash optional); raises the item's error or KeyError."""
        item = self._items[normalise_path(path)]
        if item.error is not None:
            raise item.error
        return item.result

    def __getattr__(self, name: str) -> Callable[[], Any]:
        path = self._names.get(name)
        if path is None or path not in self._items:
            raise AttributeError(f"this batch holds no answer for {name!r}; paths: {self.paths}")
        return lambda: self.get(path)


def batch_parser(readers: Mapping[str, tuple[str, ItemParser]]) -> Callable[[httpx.Response], BatchResponse]:
    """A parser for batch answers. `readers` maps a path to (method name, parser for that read)."""
    names = {name: path for path, (name, _) in readers.items()}

    def parse(response: httpx.Response) -> BatchResponse:
        body = json_body(response)
        responses = body.get("responses") if isinstance(body, dict) else None
        if not isinstance(responses, list):
            raise invalid_response(response, "BatchResponse", "expected a `responses` list", body)
        items: dict[str, BatchItem] = {}
        for raw in responses:
            if not isinstance(raw, dict):
                raise invalid_response(response, "BatchResponse", "an item is not an object", body)
            code = _item_code(raw.get("code"))
            if code is None:
                problem = f"an item's code is not an HTTP status: {raw.get('code')!r:.40}"
                raise invalid_response(response, "BatchResponse", problem, body)
            item = _item(raw, code, response.headers, readers)
            items[item.path] = item
        return BatchResponse(items, names, Meta.from_headers(response.headers))

    return parse


def _item_code(value: Any) -> int | None:
    """The item's status: an int or a string of digits; 0 when absent (a failure); None when unreadable."""
    if value is None:
        return 0
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _item(
    raw: dict[str, Any], code: int, top_headers: httpx.Headers, readers: Mapping[str, tuple[str, ItemParser]]
) -> BatchItem:
    path = normalise_path(str(raw.get("path") or ""))
    headers = httpx.Headers(top_headers)
    item_headers = raw.get("headers")
    if isinstance(item_headers, dict):
        headers.update({str(key): str(value) for key, value in item_headers.items()})
    headers.pop("content-length", None)
    headers.pop("content-encoding", None)
    item_response = httpx.Response(code or 500, headers=headers, json=raw.get("body"))
    if not item_response.is_success:
        return BatchItem(path, code, error=error_from_response(code, headers, item_response.text))
    reader = readers.get(path)
    if reader is None:
        return BatchItem(path, code, result=Response(body=raw.get("body"), meta=Meta.from_headers(headers)))
    try:
        return BatchItem(path, code, result=reader[1](item_response))
    except SmartcarError as error:
        return BatchItem(path, code, error=error)
