"""Wall time per stage, as the jobs' manifests and results record it."""

import contextlib
import time
import typing


@contextlib.contextmanager
def stage(seconds: typing.Dict[str, float], name: str) -> typing.Iterator[None]:
    """Records the block's wall time, rounded to 10 ms, as `seconds[name]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = round(time.perf_counter() - start, 2)
