"""What a job's run leaves: where each artifact lives under its output directory (any Beam
filesystem), and the failure that carries the manifest when the data does not pass validation.
"""

import dataclasses
import typing

from apache_beam.io.filesystems import FileSystems

from tf_cartola.common import files


class AnomaliesFound(RuntimeError):
    """The data did not pass validation; the message is the anomaly table, `manifest` the run's
    manifest (a preprocessing `Manifest`, or the validate job's dict).
    """

    def __init__(self, message: str, manifest: typing.Any = None):
        super().__init__(message)
        self.manifest = manifest


# Everything a job (or tf_cartola.inspect.analysis) writes at the top of an output directory.
ENTRIES = (
    "manifest.json",
    "report.html",
    "analysis.json",
    "schema.pbtxt",
    "schema_inferred.pbtxt",
    "raw",
    "transformed",
    "stats",
    "anomalies",
    "bad_rows",
    "transform",
    "tmp",
)


def delete_matching(patterns: typing.Sequence[str]) -> typing.List[str]:
    """Deletes every file that matches one of the glob patterns, then whatever the other patterns
    name (a file, or a local disk's folder); returns what it deleted.

    By match, not by `exists`: on an object store a "folder" is only a name prefix, which
    `exists` does not see, so a folder's objects are found with `folder/**`.
    """
    deleted = []
    globs = [p for p in patterns if "*" in p]
    for group in (globs, [p for p in patterns if p not in globs]):  # Files first, then folders.
        found = sorted({m.path for r in FileSystems.match(group) for m in r.metadata_list})
        if found:
            FileSystems.delete(found)
            deleted += found
    return sorted(deleted)


@dataclasses.dataclass
class Layout:
    """Where every artifact of one run lives under the output directory."""

    root: str

    def __post_init__(self):
        # Absolute: a portable runner's workers run in folders of their own, and a manifest's
        # paths must mean the same file to whoever reads it from elsewhere.
        self.root = files.absolute(self.root)

    def clear(self) -> typing.List[str]:
        """Deletes what an earlier run left here (ENTRIES only: nothing else in the folder is
        touched), so a rerun's folder never holds a stale report or split beside its own manifest;
        returns what it deleted.
        """
        return delete_matching(
            [pattern for name in ENTRIES for pattern in (self.path(name), self.path(name, "**"))]
        )

    def path(self, *parts: str) -> str:
        """A path under the run's output directory."""
        return FileSystems.join(self.root, *parts)

    def raw(self, which: str) -> str:
        """The file prefix of a split's raw rows (Parquet, tf_cartola.read.splits)."""
        return self.path("raw", which, "data")

    def transformed(self, which: str) -> str:
        """The file prefix of a split's transformed rows (Parquet)."""
        return self.path("transformed", which, "data")

    def stats(self, which: str, ext: str = "pbtxt") -> str:
        """A split's TFDV statistics (`pbtxt` text, `binpb` binary)."""
        return self.path("stats", f"{which}.{ext}")

    def anomalies(self, which: str) -> str:
        """A split's TFDV anomalies."""
        return self.path("anomalies", f"{which}.pbtxt")
