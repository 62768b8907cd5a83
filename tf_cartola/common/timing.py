"""Wall time per stage, as the jobs' manifests and results record it."""

import contextlib
import logging
import time
import typing


def this_month() -> str:
    """The current month (UTC) as YYYY-MM: the run id of the demos, whose data is of no month."""
    return time.strftime("%Y-%m", time.gmtime())


@contextlib.contextmanager
def stage(seconds: typing.Dict[str, float], name: str) -> typing.Iterator[None]:
    """Records the block's wall time, rounded to 10 ms, as `seconds[name]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = round(time.perf_counter() - start, 2)


class Progress:
    """A count of rows done on long work, logged at most every `every` seconds: `add(n)` as rows
    are done.
    """

    def __init__(self, log: logging.Logger, what: str, every: float = 10.0):
        self._log, self._what, self._every = log, what, every
        self._start = self._last = time.perf_counter()
        self.rows = 0

    def add(self, rows: int) -> None:
        """Counts `rows` more; logs a progress line when the interval has passed."""
        self.rows += rows
        now = time.perf_counter()
        if now - self._last >= self._every:
            self._last = now
            self._log.info("%s: %d rows so far (%.0f s)", self._what, self.rows, now - self._start)
