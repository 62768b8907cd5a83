"""Files at a path a user gives, on any filesystem TensorFlow reads (local, gs://, s3://, hdfs://,
ram://).

This is the one module that opens, lists or tests such a path: local paths with Python's own calls,
and any `scheme://` path through `tf.io.gfile`, so that modules used without TensorFlow (the
scoring client, the config loader) do not import it for a local file. tests/unit/test_paths.py
holds every other module to this.
"""

import json
import posixpath
import typing


def is_url(path: str) -> bool:
    """True for a `scheme://...` path (an object store or any other TensorFlow filesystem)."""
    return "://" in path


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def join(base: str, *names) -> str:
    """`base/names...`, for a local path or a URL."""
    return posixpath.join(base, *(str(n) for n in names))


def relative_to(path: str, base_file: str) -> str:
    """`path` read from the folder of `base_file` when it is relative (a config's own files); an
    absolute path or a URL as it is.
    """
    if is_url(path) or posixpath.isabs(path):
        return path
    return join(posixpath.dirname(base_file) or ".", path)


def absolute(path: str) -> str:
    """A local path made absolute (TF Serving wants base paths so); a URL as it is."""
    import os

    return path if is_url(path) else os.path.abspath(path)


def open_file(path: str, mode: str = "r") -> typing.IO:
    """Opens a file for reading ("r", "rb"), writing ("w", "wb") or appending ("a", "ab"); text is
    UTF-8.
    """
    if is_url(path):
        return _gfile().GFile(path, mode)
    return open(path, mode, encoding=None if "b" in mode else "utf-8")


def exists(path: str) -> bool:
    """True if a file or folder is there."""
    import os

    return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    """True if a folder is there."""
    import os

    return _gfile().isdir(path) if is_url(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
    """Creates a folder and its parents (object stores have none to create)."""
    import os

    if is_url(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def replace(source: str, target: str) -> None:
    """Moves a file over another: atomic on a local filesystem; on an object store a copy of one
    object, which appears whole.
    """
    import os

    if is_url(target):
        _gfile().rename(source, target, overwrite=True)
    else:
        os.replace(source, target)


def remove(path: str) -> None:
    """Deletes a file if it is there."""
    if exists(path):
        if is_url(path):
            _gfile().remove(path)
        else:
            import os

            os.remove(path)


def read_json(path: str):
    """The JSON document in a file."""
    with open_file(path) as f:
        return json.load(f)


def write_json(path: str, data) -> None:
    """Writes `data` as indented JSON with sorted keys."""
    with open_file(path, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True))
