"""Files at a path a user gives, on any filesystem TensorFlow reads (local, gs://, s3://, hdfs://,
ram://).

This is the one module that opens, lists or tests such a path: local paths with Python's own calls,
and any `scheme://` path through `tf.io.gfile`, so that modules used without TensorFlow (the
scoring client, the config loader) do not import it for a local file. tests/unit/test_paths.py
holds every other module to this.
"""

import importlib
import json
import posixpath
import sys
import typing

# Schemes TensorFlow reaches only once a plugin is imported: s3:// through tensorflow-io (which
# reads S3_ENDPOINT, S3_USE_HTTPS and S3_VERIFY_SSL for a store other than AWS's). gs:// is built
# in.
PLUGINS = {"s3": "tensorflow_io"}


def is_url(path: str) -> bool:
    """True for a `scheme://...` path (an object store or any other TensorFlow filesystem)."""
    return "://" in path


def reach(*paths: str) -> None:
    """Makes TensorFlow reach every path given: imports the plugin of each scheme it needs
    (PLUGINS). Raises ValueError naming the path when that plugin is not installed.
    """
    for path in paths:
        module = PLUGINS.get(path.split("://", 1)[0]) if is_url(path) else None
        if module is None or module in sys.modules:
            continue
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(
                f"{path}: TensorFlow reaches {path.split('://')[0]}:// through {module}, which is "
                "not installed (requirements.txt pins it)"
            ) from e


def gfile(*paths: str):
    """`tf.io.gfile`, with the filesystems of `paths` reachable (see `reach`)."""
    import tensorflow as tf

    reach(*paths)
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
        return gfile(path).GFile(path, mode)
    return open(path, mode, encoding=None if "b" in mode else "utf-8")


def exists(path: str) -> bool:
    """True if a file or folder is there."""
    import os

    return gfile(path).exists(path) if is_url(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    """True if a folder is there."""
    import os

    return gfile(path).isdir(path) if is_url(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
    """Creates a folder and its parents (object stores have none to create)."""
    import os

    if is_url(path):
        gfile(path).makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def replace(source: str, target: str) -> None:
    """Moves a file over another: atomic on a local filesystem; on an object store a copy of one
    object, which appears whole.
    """
    import os

    if is_url(target):
        gfile(source, target).rename(source, target, overwrite=True)
    else:
        os.replace(source, target)


def remove(path: str) -> None:
    """Deletes a file if it is there."""
    if exists(path):
        if is_url(path):
            gfile(path).remove(path)
        else:
            import os

            os.remove(path)


def rmtree(path: str) -> None:
    """Deletes a folder and everything in it, if it is there."""
    if exists(path):
        gfile(path).rmtree(path)


def read_proto(path: str, message_class, text: bool = False):
    """A protocol buffer message of `message_class` from a file, binary or (`text`) in text format:
    what TFDV's loaders do, without importing TFDV (and Beam with it).
    """
    if not text:
        with open_file(path, "rb") as f:
            return message_class.FromString(f.read())
    from google.protobuf import text_format

    with open_file(path) as f:
        return text_format.Parse(f.read(), message_class())


def read_json(path: str):
    """The JSON document in a file."""
    with open_file(path) as f:
        return json.load(f)


def write_json(path: str, data) -> None:
    """Writes `data` as indented JSON with sorted keys."""
    with open_file(path, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True))
