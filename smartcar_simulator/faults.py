"""Faults on demand: "the next 3 calls to this vehicle's charge endpoint fail with UPSTREAM NO_RESPONSE".

A rule matches calls by vehicle, path (a suffix such as `charge`, or a glob such as `signals/*`) and
method; it fires for the next `count` matching calls, with a `probability`, or (with neither) on every
matching call until cleared. What it does: answer a Smartcar error from the catalogue, a bare HTTP
status, a gateway's HTML page, answer slowly, or drop the connection. With `after_effect` a command is
applied before the failure is answered: the ambiguous failure whose command took effect.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultKind = Literal["error", "http_status", "gateway_html", "slow", "drop"]
GLOB_CHARS = frozenset("*?[")
GATEWAY_PAGE = (
    "<html><head><title>{status} Bad Gateway</title></head><body><center><h1>{status} Bad Gateway</h1>"
    "</center><hr><center>nginx</center></body></html>"
)


class ErrorSpec(BaseModel):
    """A Smartcar error: `type` and `code` from the catalogue; `status` defaults to the catalogue's."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1)
    code: str | None = None
    status: int | None = Field(None, ge=400, le=599)
    retry_after: float | None = Field(None, ge=0)
    description: str | None = None


class FaultSpec(BaseModel):
    """The body of `POST /_sim/faults`."""

    model_config = ConfigDict(extra="forbid")

    vehicle_id: str | None = None
    path: str | None = None
    method: str | None = None
    count: int | None = Field(None, ge=1)
    probability: float | None = Field(None, ge=0, le=1)
    kind: FaultKind | None = None
    error: ErrorSpec | None = None
    status: int | None = Field(None, ge=100, le=599)
    seconds: float | None = Field(None, ge=0, le=600)
    after_effect: bool = False

    @model_validator(mode="after")
    def _what(self) -> Self:
        if self.kind is None:
            if self.error is None:
                raise ValueError("a fault needs `error` or `kind`")
            self.kind = "error"
        if self.kind == "error" and self.error is None:
            raise ValueError("kind `error` needs an `error` object {type, code}")
        if self.kind == "slow" and self.seconds is None:
            raise ValueError("kind `slow` needs `seconds`")
        if self.kind == "http_status" and self.status is None:
            raise ValueError("kind `http_status` needs `status`")
        if self.count is not None and self.probability is not None:
            raise ValueError("give `count` or `probability`, not both")
        if self.method is not None:
            self.method = self.method.upper()
        return self


@dataclass(slots=True)
class Fault:
    id: str
    spec: FaultSpec
    remaining: int | None
    fired: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.spec.model_dump(exclude_none=True),
            "remaining": self.remaining,
            "fired": self.fired,
        }


def path_matches(pattern: str, path: str, sub_path: str | None) -> bool:
    """A glob against the vehicle-relative path (or the whole path), else a suffix of the path."""
    pattern = pattern.strip("/")
    if GLOB_CHARS.intersection(pattern):
        target = sub_path if sub_path is not None else path.strip("/")
        return fnmatch.fnmatchcase(target, pattern)
    if sub_path is not None and sub_path == pattern:
        return True
    return path.rstrip("/").endswith("/" + pattern) if pattern else sub_path == ""


@dataclass(slots=True)
class FaultBook:
    """The active rules, first match wins. Matching is a short scan: few rules are ever active."""

    rng: random.Random
    faults: list[Fault] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(id=f"fault-{next(self._ids)}", spec=spec, remaining=spec.count)
        with self._lock:
            self.faults.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self.faults)
            self.faults = [fault for fault in self.faults if fault.id != fault_id]
            return len(self.faults) != before

    def clear(self) -> int:
        with self._lock:
            count = len(self.faults)
            self.faults = []
        return count

    def match(
        self,
        *,
        method: str,
        path: str,
        sub_path: str | None,
        vehicle_id: str | None,
        kinds: frozenset[str] | None = None,
    ) -> Fault | None:
        """The fault that fires for this call, if any (its count is used up by firing)."""
        if not self.faults:
            return None
        with self._lock:
            for fault in self.faults:
                spec = fault.spec
                if kinds is not None and spec.kind not in kinds:
                    continue
                if spec.vehicle_id is not None and spec.vehicle_id != vehicle_id:
                    continue
                if spec.method is not None and spec.method != method:
                    continue
                if spec.path is not None and not path_matches(spec.path, path, sub_path):
                    continue
                if spec.probability is not None and self.rng.random() >= spec.probability:
                    continue
                fault.fired += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                return fault
        return None
