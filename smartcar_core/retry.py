"""`RetryPolicy`: given an error and the attempt that failed, when (and whether) to try again.

Retry-After first, then capped exponential backoff with jitter, by the catalogue's classes. The policy
only decides; callers sleep, re-queue with a countdown, or park the work. Attempts count from 1 (the
first call that failed).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from smartcar_core.catalogue import RetryClass
from smartcar_core.errors import SmartcarError


class Action(Enum):
    RETRY = "retry"
    """Try again after `delay` seconds."""
    REFRESH_AND_RETRY = "refresh_and_retry"
    """Refresh the access token, then try again at once."""
    DONE = "done"
    """The error means the command's goal is already reached (a benign code)."""
    GIVE_UP = "give_up"
    """Do not retry: the error needs a person, or the attempts are used up."""


@dataclass(frozen=True, slots=True)
class RetryDecision:
    action: Action
    delay: float = 0.0
    reason: str = ""
    retry_class: RetryClass | None = None

    @property
    def retry(self) -> bool:
        return self.action in (Action.RETRY, Action.REFRESH_AND_RETRY)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Decide retries for Smartcar errors.

    Defaults: up to 5 attempts for transient errors (1 s, 2 s, 4 s, 8 s backoff, at most 60 s each),
    Retry-After honoured up to 15 minutes, and long-delay errors (asleep, unreachable, OEM rate limit)
    retried at most 3 times after 5, 10 and 20 minutes (at most an hour). Jitter takes up to half of
    each backoff away so that many workers do not retry in step.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.5
    max_retry_after: float = 900.0
    long_max_attempts: int = 4
    long_base_delay: float = 300.0
    long_max_delay: float = 3600.0
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.long_max_attempts < 1:
            raise ValueError("max_attempts and long_max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")
        if self.long_base_delay < 0 or self.long_max_delay < self.long_base_delay:
            raise ValueError("need 0 <= long_base_delay <= long_max_delay")

    def decide(
        self, error: SmartcarError, attempt: int, *, command: str | None = None, refreshed: bool = False
    ) -> RetryDecision:
        """What to do after `attempt` failed with `error`.

        `command` names the command being sent (e.g. "stop_charge") so that benign codes count as
        done; `refreshed` says the token was already refreshed once for this piece of work.
        """
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        if command is not None and error.is_benign_for(command):
            return RetryDecision(Action.DONE, reason=f"{error.code} means {command} has nothing to do")
        retry_class = error.retry_class
        if retry_class is RetryClass.NEVER:
            return self._give_up(retry_class, f"{error.message} is not retryable")
        if retry_class is RetryClass.REFRESH_TOKEN:
            if refreshed:
                return self._give_up(retry_class, "the token was refused again after a refresh")
            return RetryDecision(
                Action.REFRESH_AND_RETRY, reason="access token refused", retry_class=retry_class
            )
        return self._retry_later(error, retry_class, attempt)

    def _retry_later(self, error: SmartcarError, retry_class: RetryClass, attempt: int) -> RetryDecision:
        """Retry-After first; else backoff, long for the long-delay class."""
        long_delay = retry_class is RetryClass.LONG_DELAY
        if attempt >= (self.long_max_attempts if long_delay else self.max_attempts):
            return self._give_up(retry_class, f"gave up after {attempt} attempts")
        if error.retry_after is not None:
            delay = min(error.retry_after, self.max_retry_after)
            return RetryDecision(Action.RETRY, delay, "honouring Retry-After", RetryClass.RETRY_AFTER)
        if long_delay:
            delay = self._backoff(attempt, self.long_base_delay, self.long_max_delay)
        else:
            delay = self._backoff(attempt, self.base_delay, self.max_delay)
        return RetryDecision(Action.RETRY, delay, f"{error.message}: back off", retry_class)

    def backoff(self, attempt: int) -> float:
        """The jittered delay after `attempt` for a transient error with no Retry-After."""
        return self._backoff(attempt, self.base_delay, self.max_delay)

    def _backoff(self, attempt: int, base: float, cap: float) -> float:
        ceiling = min(cap, base * 2.0 ** (attempt - 1))
        return ceiling * (1 - self.jitter * self.random())

    @staticmethod
    def _give_up(retry_class: RetryClass, reason: str) -> RetryDecision:
        return RetryDecision(Action.GIVE_UP, reason=reason, retry_class=retry_class)


DEFAULT_RETRY_POLICY = RetryPolicy()
