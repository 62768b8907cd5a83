"""The slices an evaluation is stratified over, from the config's `evaluate.slices`.


- `COLUMN`: one slice per value of a raw feature (`anos_como_pro` 0, 1, 2, 3; `missing` for an
  empty cell);
- `pixels:screen`: the screen class of the resolution "WIDTHxHEIGHT", by its width in pixels:
  `mobile` below 768, `tablet` from 768 to below 1280, `desktop` from 1280, `unknown` when empty or
  not WIDTHxHEIGHT;
- `COLUMN:quartiles`: a numeric feature in the quartiles of the training split (read from its TFDV
  quantile histogram), as `< a`, `a to < b`, `b to < c`, `>= c` (and `missing`).
"""

import re
import typing

import numpy as np

MISSING = "missing"
SCREENS = (("mobile", 768), ("tablet", 1280), ("desktop", np.inf))
_RESOLUTION = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def columns_needed(specs: typing.Sequence[str]) -> typing.List[str]:
    """The raw columns the slices read."""
    return sorted({spec.partition(":")[0] for spec in specs})


def screen(pixels: str) -> str:
    """The screen class of one "WIDTHxHEIGHT" value (see the module docstring)."""
    match = _RESOLUTION.match(pixels or "")
    if not match:
        return "unknown"
    width = int(match.group(1))
    return next(name for name, below in SCREENS if width < below)


def _number(value: float, digits: int = 12) -> str:
    return f"{value:.{digits}g}"


def values(spec: str, columns: typing.Mapping[str, np.ndarray], edges) -> np.ndarray:
    """Each row's slice value (a string) under one slice spec.

    Args:
      spec: `COLUMN`, `pixels:screen` or `COLUMN:quartiles`.
      columns: raw column -> the rows' values (NaN or "" where missing).
      edges: numeric column -> its three training quartiles, for `:quartiles`.
    """
    column, _, kind = spec.partition(":")
    raw = np.asarray(columns[column])
    if kind == "screen":
        return np.array([screen(v) for v in raw], dtype=object)
    if raw.dtype.kind in "OUS":
        return np.array([v if v else MISSING for v in raw], dtype=object)
    numbers = raw.astype(np.float64)
    missing = np.isnan(numbers)
    if kind == "quartiles":
        a, b, c = (_number(e, 4) for e in edges[column])  # Labels; the cut uses the edges.
        names = np.array([f"< {a}", f"{a} to < {b}", f"{b} to < {c}", f">= {c}"], dtype=object)
        cut = np.searchsorted(edges[column], np.where(missing, 0, numbers), side="right")
        out = names[cut]
    else:
        out = np.array([_number(v) for v in np.where(missing, 0, numbers)], dtype=object)
    out[missing] = MISSING
    return out


def ordered(found: np.ndarray) -> typing.List[str]:
    """The distinct slice values in reading order: numbers ascending, quartiles low to high,
    screens small to large, `missing` and `unknown` last.
    """
    order = {name: i for i, (name, _) in enumerate(SCREENS)}

    def key(value: str):
        if value in (MISSING, "unknown"):
            return (3, 0.0, value)
        if value in order:
            return (1, float(order[value]), value)
        number = re.search(r"-?\d+(\.\d+)?(e[+-]?\d+)?", value)
        if value.startswith("<"):
            return (0, -np.inf, value)
        return (0, float(number.group(0)) if number else 0.0, value)

    return sorted(set(found.tolist()), key=key)


def quartiles(histogram) -> typing.Tuple[float, float, float]:
    """The 25th, 50th and 75th percentiles of a TFDV quantile histogram (linear within the
    bucket that holds each).
    """
    lows = np.array([b.low_value for b in histogram.buckets])
    highs = np.array([b.high_value for b in histogram.buckets])
    counts = np.array([b.sample_count for b in histogram.buckets])
    cumulative = np.concatenate([[0.0], np.cumsum(counts)]) / counts.sum()
    out = []
    for q in (0.25, 0.5, 0.75):
        i = min(int(np.searchsorted(cumulative, q, side="right")) - 1, len(counts) - 1)
        share = (q - cumulative[i]) / max(cumulative[i + 1] - cumulative[i], 1e-12)
        out.append(float(lows[i] + share * (highs[i] - lows[i])))
    return tuple(out)
