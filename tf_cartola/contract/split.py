"""The deterministic train/eval split: a stable hash of the user id, same on every run and
runner.
"""

import hashlib
import typing

import numpy as np

SPLITS = ("train", "eval")
# (train, eval) hash buckets: a third of the users in eval. The config's split_ratio defaults to
# it.
DEFAULT_RATIO = (2, 1)


def is_eval(globo_ids: typing.Iterable[int], ratio=DEFAULT_RATIO) -> np.ndarray:
    """Which users belong to the eval split, by the MD5 of each id's decimal text.

    Args:
      globo_ids: user ids.
      ratio: (train, eval) buckets; (2, 1) puts a third of the users in eval.

    Returns:
      A bool array, True for eval.
    """
    digests = b"".join(hashlib.md5(b"%d" % int(i)).digest()[:8] for i in globo_ids)
    buckets = np.frombuffer(digests, dtype="<u8") % np.uint64(sum(ratio))
    return buckets >= np.uint64(ratio[0])


def split_of(globo_id: int, ratio=DEFAULT_RATIO) -> str:
    """The split of one user, "train" or "eval" (see `is_eval`)."""
    return "eval" if is_eval([globo_id], ratio)[0] else "train"
