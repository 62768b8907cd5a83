"""The month a run's data is of (YYYY-MM): the run id that ties a trained version, its scores and
next month's backtest together, and the order versions may be pushed in.

One rule for every command line and the DAG (`resolve`): the run id given, a month; else the month
the input's names carry (`users-2026-03.csv`, `exports/2026_03/*.csv`); else the command asks for
--run_id instead of guessing. The DAG gives the month of its data interval, `{{ ds[:7] }}`.
"""

import re
import typing

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# A month in a file or folder name: 2026-01, 2026_01 (not inside a longer number).
_IN_NAME = re.compile(r"(?<!\d)(\d{4})[-_](0[1-9]|1[0-2])(?!\d)")


def check(run_id: str) -> str:
    """`run_id` if it is a month, YYYY-MM.

    Raises:
      ValueError: anything else.
    """
    if not _MONTH.match(run_id or ""):
        raise ValueError(f"a run id is a month, YYYY-MM (e.g. 2026-03), got {run_id!r}")
    return run_id


class MissingRunId(ValueError):
    """No run id given and none in the input's names."""


def resolve(given: typing.Optional[str], paths: typing.Iterable[str]) -> str:
    """The run id by the module's rule.

    Raises:
      ValueError: `given` is not a month.
      MissingRunId: nothing given and the input's names carry no month (or several).
    """
    if given:
        return check(given)
    paths = list(paths)
    found = of_paths(paths)
    if found is None:
        raise MissingRunId(
            f"give --run_id YYYY-MM, the month the data is of: the input's names "
            f"({', '.join(paths[:3]) or 'none'}) carry no month"
        )
    return found


def of_paths(paths: typing.Iterable[str]) -> typing.Optional[str]:
    """The month the input paths name (the last YYYY-MM or YYYY_MM of each path), when they all
    name the same one; else None.
    """
    found = set()
    for path in paths:
        months = _IN_NAME.findall(path)
        if not months:
            return None
        found.add("-".join(months[-1]))
    return found.pop() if len(found) == 1 else None
