"""The deterministic train/eval split: a stable hash of the user id, same on every run and runner."""

import hashlib

SPLITS = ("train", "eval")


def split_of(globo_id: int, ratio=(2, 1)) -> str:
    """Which split a user belongs to.

    Args:
      globo_id: the user id.
      ratio: (train, eval) buckets; (2, 1) puts a third of the users in eval.

    Returns:
      "train" or "eval".
    """
    digest = hashlib.md5(str(int(globo_id)).encode("ascii")).digest()
    bucket = int.from_bytes(digest[:8], "little") % sum(ratio)
    return "train" if bucket < ratio[0] else "eval"
