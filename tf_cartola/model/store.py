"""A model's versions as TF Serving reads them: <base_path>/<version>/, numeric folder names."""

import os
import shutil
import typing


def versions(base_path: str) -> typing.List[int]:
    """The numeric version folders under a model base path (local or any TensorFlow filesystem), ascending."""
    import tensorflow as tf  # Its gfile reads gs:// as TF Serving does.

    if not tf.io.gfile.isdir(base_path):
        return []
    names = (entry.strip("/") for entry in tf.io.gfile.listdir(base_path))
    return sorted(int(n) for n in names if n.isdigit() and tf.io.gfile.isdir(os.path.join(base_path, n)))


def push(export_dir: str, base_path: str) -> int:
    """Copies an export to `<base_path>/<next version>/` atomically; returns the version.

    The copy is made in a hidden sibling directory, then renamed: a server polling
    `base_path` sees either no new version or a complete one. (Atomic on a local
    filesystem; object stores have no rename.)
    """
    os.makedirs(base_path, exist_ok=True)
    version = (versions(base_path) or [0])[-1] + 1
    staging = os.path.join(base_path, f".staging-{version}-{os.getpid()}")
    shutil.copytree(export_dir, staging)
    try:
        os.rename(staging, os.path.join(base_path, str(version)))
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version
