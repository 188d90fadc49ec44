"""Waiting out a busy server: the backoff schedule, ``Retry-After`` and the retry notice.

Ollama answers HTTP 503 "server busy" when more than ``OLLAMA_MAX_QUEUE`` requests wait,
and proxies or cloud services answer 429 "too many requests".  Both come before any
answer text, so the same request can simply be sent again.  A class of thirty kernels
hitting one server at the same moment must not retry in lockstep, so every wait is
jittered; a server that says when to come back (``Retry-After``) is obeyed.

Only the HTTP client (:meth:`ollama_magic.engine.client.OllamaClient._request`) retries, with
this schedule; everything else (``generate()``, ``%%generate``, the panel, ``%ollama``)
goes through it.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: The first wait, in seconds; each following one doubles, up to :data:`CAP`.
BASE = 1.0
FACTOR = 2.0
CAP = 30.0
#: The longest wait a ``Retry-After`` may impose (a server asking for an hour is not
#: served by a notebook cell sitting there; the person can run the cell again).
MAX_RETRY_AFTER = 300.0
#: Each wait is the nominal one times a factor drawn from this range: the mean stays the
#: nominal schedule, and thirty kernels rejected together come back spread out.
JITTER = (0.5, 1.5)

#: The statuses that mean "busy, come back later" (before any answer text).
BUSY_STATUSES = (429, 503)

#: Waits go through this function; tests replace it to record instead of sleeping.
sleep: Callable[[float], None] = time.sleep


def wait(seconds: float, stop: threading.Event | None = None) -> bool:
    """Wait before asking a busy server again; True if ``stop`` was set meanwhile.

    A request that can be stopped (the panel's Stop, a batch's Ctrl-C, a comparison's
    interrupt) waits on its ``stop`` event, so a stop during a 30-second backoff ends it at
    once; any other wait goes through :data:`sleep`.
    """
    if stop is None:
        sleep(seconds)
        return False
    return stop.wait(seconds)


_random = random.Random()


def nominal_wait(number: int) -> float:
    """The un-jittered wait before retry ``number`` (1-based): 1, 2, 4, 8, 16, 30, 30... s."""
    return min(CAP, BASE * FACTOR ** (number - 1))


def schedule(retries: int) -> list[float]:
    """The nominal waits for ``retries`` retries."""
    return [nominal_wait(n) for n in range(1, retries + 1)]


def retries_for(seconds: float) -> int:
    """The fewest retries whose nominal waits add up to at least ``seconds``."""
    total, count = 0.0, 0
    while total < seconds:
        count += 1
        total += nominal_wait(count)
    return count


#: The default number of retries: about a minute of waiting in all (1+2+4+8+16+30 = 61 s,
#: so 6 retries; with jitter the total lies between 30 and 92 s, 61 s on average).
DEFAULT_RETRIES = retries_for(60.0)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None.

    >>> parse_retry_after("3"), parse_retry_after(" 1.5 "), parse_retry_after("soon")
    (3.0, 1.5, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, min(MAX_RETRY_AFTER, seconds))


def wait_before(number: int, retry_after: float | None) -> float:
    """How long to wait before retry ``number``: the server's ``Retry-After`` if it gave one
    (plus up to 20 % so a class does not come back in lockstep), else the jittered schedule."""
    if retry_after is not None:
        return retry_after * _random.uniform(1.0, 1.2)
    return nominal_wait(number) * _random.uniform(*JITTER)


@dataclass(frozen=True)
class BusyRetry:
    """One retry about to happen, as the ``on_retry`` callback receives it."""

    number: int  #: 1-based
    total: int  #: the most retries this request will make
    wait: float  #: seconds until the request is sent again
    status: int  #: 503 or 429
    reason: str  #: the server's message, short

    def message(self) -> str:
        """The line a person sees, e.g. ``server busy: retry 2 of 6 in 1.6 s``."""
        what = "rate limited" if self.status == 429 else "server busy"
        return f"{what}: retry {self.number} of {self.total} in {self.wait:.1f} s"


RetryCallback = Callable[[BusyRetry], None]
