"""TF Serving's batch-size rule from --batching_parameters_file (a BatchingParameters text proto).

The local server runs each request as it comes (no queueing across requests), but it
refuses what TF Serving's batch scheduler refuses: a request of more rows than
`max_batch_size` (default 1000). With `enable_large_batch_splitting`, TF Serving splits a
request into batches of `max_execution_batch_size`, and `max_batch_size` only bounds a
request; the bound is the same here.
"""

import dataclasses
import re

from serving.errors import invalid

DEFAULT_MAX_BATCH_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = DEFAULT_MAX_BATCH_SIZE

    def check(self, rows: int) -> None:
        """Raises INVALID_ARGUMENT, with TF Serving's wording, for a request too large to schedule."""
        if rows > self.max_batch_size:
            raise invalid(f"Task size {rows} is larger than maximum input batch size {self.max_batch_size}")


UNLIMITED = BatchLimits(max_batch_size=2**63 - 1)  # Without --enable_batching no size is refused.


def _value(text: str, field: str):
    match = re.search(rf"\b{field}\s*\{{\s*value\s*:\s*(\d+)\s*\}}", text)
    return int(match.group(1)) if match else None


def parse(text: str) -> BatchLimits:
    """The limits a BatchingParameters text proto sets (comments and unknown fields ignored)."""
    text = re.sub(r"#[^\n]*", "", text)
    max_batch = _value(text, "max_batch_size") or DEFAULT_MAX_BATCH_SIZE
    splitting = bool(re.search(r"\benable_large_batch_splitting\s*:\s*true\b", text))
    return BatchLimits(max_batch, splitting, _value(text, "max_execution_batch_size") or max_batch)
