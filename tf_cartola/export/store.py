"""A model's versions as TF Serving reads them: <base_path>/<version>/, numeric folder names, on
any filesystem TensorFlow reads (local, gs://, s3://, ram://...).

Pushing a version never lets a server polling the base path load half of it:
- On a local filesystem the version is copied to a hidden sibling (`.staging-*`, a name TF Serving
  ignores) and renamed, which is atomic: the version appears whole.
- An object store has no rename (a "rename" is a copy of every object), so a version folder comes
  into being with its first object. The version is first copied whole to the hidden sibling (the
  slow upload), then copied inside the store to its numeric name with `saved_model.pb` last: until
  that file exists, TF Serving refuses the folder ("does not appear to contain a SavedModel") and
  retries it (`--max_num_load_retries`, `--load_retry_interval_micros`), and once it exists every
  variable file is already in place. Without that order a server can load a graph whose variables
  are still uploading ("Attempting to use uninitialized value").
"""

import posixpath
import random
import time
import typing
import uuid

from tf_cartola.common import files

SAVED_MODEL_FILE = "saved_model.pb"
CLAIMS = ".push-claims"  # Version numbers being pushed (TF Serving ignores names not numbers).


def has_atomic_rename(path: str) -> bool:
    """True for a local path: rename(2) moves a folder at once. Object stores (any scheme://)
    copy.
    """
    return not files.is_url(path)


def versions(base_path: str) -> typing.List[int]:
    """The numeric version folders under a model base path (local or any TensorFlow filesystem),
    ascending.
    """
    gfile = files.gfile(base_path)
    if not gfile.isdir(base_path):
        return []
    names = (entry.strip("/") for entry in gfile.listdir(base_path))
    return sorted(int(n) for n in names if n.isdigit() and gfile.isdir(files.join(base_path, n)))


def version_dir(base_path: str, version: int) -> str:
    """The folder of one version."""
    return files.join(base_path, version)


def copy_tree(source: str, target: str) -> None:
    """Copies every file under `source` to `target` with `saved_model.pb` last, creating folders as
    needed.
    """
    gfile = files.gfile(source, target)
    names = []
    for folder, _, found in gfile.walk(source):
        relative = posixpath.relpath(folder, source) if folder != source else ""
        gfile.makedirs(files.join(target, relative))
        # TensorFlow's ram:// lists by name prefix: under assets/ it shows a phantom ".extra" of
        # assets.extra/.
        names += [
            posixpath.join(relative, n) for n in found if gfile.exists(files.join(folder, n))
        ]
    for name in sorted(names, key=lambda f: f == SAVED_MODEL_FILE):  # The SavedModel appears last.
        gfile.copy(files.join(source, name), files.join(target, name), overwrite=True)


def push(export_dir: str, base_path: str) -> int:
    """Copies an export to `<base_path>/<next version>/` so that a polling server sees either no
    new version or a complete one (see the module docstring); returns the version. Concurrent
    pushes each get a version of their own (`claim`).
    """
    gfile = files.gfile(export_dir, base_path)
    gfile.makedirs(base_path)
    version, claimed = claim(base_path)
    staging = files.join(base_path, f".staging-{version}-{uuid.uuid4().hex[:12]}")
    target = version_dir(base_path, version)
    try:
        copy_tree(export_dir, staging)
        if has_atomic_rename(base_path):
            gfile.rename(staging, target)
        else:
            copy_tree(staging, target)
    finally:
        if gfile.exists(staging):
            _remove_tree(staging)
        gfile.remove(claimed)
    return version


def claim(base_path: str) -> typing.Tuple[int, str]:
    """Claims the next version number for one push: (the version, the claim's file, to delete once
    the version is in place).

    A claim is a file `.push-claims/<version>.<random>`, written and then listed: a push goes on
    only when no other claim for the same number is there. Of two pushes that claim a number at
    once, the later to list sees the other's claim and tries the next number (a push that sees a
    rival withdraws, so both may withdraw, and both retry after a random pause; never both keep
    it). That needs only read-after-write listing, which local disks, GCS and S3 give; no rename or
    conditional write. Numbers stay distinct, not always contiguous: a claim left by a killed
    push, or withdrawn under contention, can make later pushes skip its number.
    """
    gfile = files.gfile(base_path)
    folder = files.join(base_path, CLAIMS)
    gfile.makedirs(folder)
    token = uuid.uuid4().hex
    while True:
        taken = [int(name.split(".")[0]) for name in _names(gfile, folder) if name[0].isdigit()]
        version = max([0, *versions(base_path), *taken]) + 1
        mine = files.join(folder, f"{version}.{token}")
        with gfile.GFile(mine, "w") as f:
            f.write(token)
        rivals = [
            name
            for name in _names(gfile, folder)
            if name.startswith(f"{version}.") and name != f"{version}.{token}"
        ]
        if not rivals and not gfile.exists(version_dir(base_path, version)):
            return version, mine
        gfile.remove(mine)
        time.sleep(random.uniform(0.01, 0.1))


def _names(gfile, folder: str) -> typing.List[str]:
    """The names in a folder; none when it is not there. An S3 store (through tensorflow-io) keeps
    no folder objects: `makedirs` writes nothing, and listing a prefix without objects fails.
    """
    import tensorflow as tf

    try:
        return gfile.listdir(folder)
    except tf.errors.NotFoundError:
        return []


def _remove_tree(path: str) -> None:
    """`rmtree`, one folder at a time, deepest and longest name first: TensorFlow's ram:// lists a
    folder's children by name prefix, so `assets/` shows a phantom of `assets.extra/` until that
    one is gone.
    """
    gfile = files.gfile(path)
    for folder in sorted((folder for folder, _, _ in gfile.walk(path)), reverse=True):
        gfile.rmtree(folder)
