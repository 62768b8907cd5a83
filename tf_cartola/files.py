"""Writing the runs' JSON records, on any filesystem TensorFlow reads (local, gs://)."""

import json


def write_json(path: str, data) -> None:
    """Writes `data` as indented JSON with sorted keys."""
    import tensorflow as tf  # Its gfile writes to object stores too.

    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True))
