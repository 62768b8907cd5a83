"""Wall time per stage, as the jobs' manifests and results record it."""

import contextlib
import time
import typing


def this_month() -> str:
    """The current month (UTC) as YYYY-MM: the default id of a monthly scoring run."""
    return time.strftime("%Y-%m", time.gmtime())


@contextlib.contextmanager
def stage(seconds: typing.Dict[str, float], name: str) -> typing.Iterator[None]:
    """Records the block's wall time, rounded to 10 ms, as `seconds[name]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = round(time.perf_counter() - start, 2)
