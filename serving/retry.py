"""Retrying a call while the server says it is briefly unavailable: the clients' one backoff
rule.
"""

import time
import typing

T = typing.TypeVar("T")


class Transient(Exception):
    """Raised by a call to ask for another attempt; `final` is what to raise when attempts run
    out.
    """

    def __init__(self, final: Exception):
        super().__init__(str(final))
        self.final = final


def with_backoff(call: typing.Callable[[], T], retries: int, backoff: float) -> T:
    """Runs `call`; on Transient, sleeps backoff * 2**attempt and tries again, up to `retries` more
    times, then raises the last Transient's `final` error.

    Args:
      call: the call to make.
      retries: how many more times to try after the first.
      backoff: the first wait, in seconds; it doubles each time.
    """
    for attempt in range(retries + 1):
        try:
            return call()
        except Transient as e:
            if attempt == retries:
                raise e.final from None
        time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")  # The loop returns or raises.
