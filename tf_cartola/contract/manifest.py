"""The preprocessing output as the later stages read it: `manifest.json` as a typed `Manifest`.

`beam_jobs.preprocess` writes it; training, baselines, the report, the analysis and
the version listing read it with `load`, the one loader, which raises
`PreprocessOutputError` for anything that is not a complete preprocessing output.
"""

import dataclasses
import typing

from tf_cartola.common import files

FILE = "manifest.json"
# Artifacts every preprocessing output lists; a valid one also has TRANSFORMED, one with bad rows
# `bad_rows`.
ARTIFACTS = (
    "schema",
    "raw_train",
    "raw_eval",
    "stats_train",
    "stats_eval",
    "anomalies_train",
    "anomalies_eval",
    "anomalies_input",
)
TRANSFORMED = ("transform", "transformed_train", "transformed_eval")


class PreprocessOutputError(ValueError):
    """A folder that is not a complete preprocessing output, or one the caller cannot use."""


@dataclasses.dataclass
class Manifest:
    """What one preprocessing run read, found and wrote (the fields of `manifest.json`)."""

    config: dict  # The resolved config the run used (its `preprocess` section at least).
    inputs: typing.List[dict]  # Each input's path, bytes, rows and fingerprint.
    rows: typing.Dict[str, int]  # read, train, eval, bad.
    bad_rows: typing.Dict[str, int]  # "kind:column" -> rows set aside.
    duplicate_ids: typing.Dict[str, int]
    anomalies: typing.List[dict]  # split, feature, kind, description.
    valid: bool
    accepted: typing.Optional[dict]  # Anomalies accepted on purpose: by whom, when, which.
    baseline: typing.Optional[dict]
    baseline_missing: typing.Optional[str]
    drift: typing.Dict[str, typing.List[dict]]  # comparison -> tf_cartola.validate.drift checks.
    seconds: typing.Dict[str, float]
    runner: dict
    versions: typing.Dict[str, str]
    artifacts: typing.Dict[str, str]  # name -> path or glob (ARTIFACTS, TRANSFORMED, report, ...).
    dir: str = ""  # The folder it was read from (not written).

    def artifact(self, name: str) -> str:
        """The path of one artifact.

        Raises:
          PreprocessOutputError: the run did not publish it (e.g. the transform of data that
            failed validation).
        """
        if name not in self.artifacts:
            why = " (it failed validation)" if name in TRANSFORMED and not self.valid else ""
            raise PreprocessOutputError(
                f"{self.dir or 'the preprocessing output'} has no {name}{why}"
            )
        return self.artifacts[name]

    def to_json(self) -> dict:
        """The fields as `manifest.json` holds them."""
        out = dataclasses.asdict(self)
        del out["dir"]
        return out


def load(preprocess_dir: str, trainable: bool = False) -> Manifest:
    """Reads and checks `manifest.json` of a preprocessing output.

    Args:
      preprocess_dir: the output folder of `beam_jobs.preprocess` (any filesystem).
      trainable: also require that the data passed validation and its transform was published.

    Raises:
      PreprocessOutputError: no manifest, one that is not JSON or lacks fields, or (with
        `trainable`) data that failed validation.
    """
    path = files.join(preprocess_dir, FILE)
    if not files.exists(path):
        raise PreprocessOutputError(
            f"{preprocess_dir} is not a preprocessing output: it has no {FILE} "
            "(run `python -m beam_jobs.preprocess` first)"
        )
    try:
        data = files.read_json(path)
    except ValueError as e:
        raise PreprocessOutputError(f"{path} is not JSON: {e}") from None
    names = {f.name for f in dataclasses.fields(Manifest)} - {"dir"}
    missing = sorted(names - set(data)) or [
        a for a in ARTIFACTS if a not in data.get("artifacts", {})
    ]
    if missing:
        raise PreprocessOutputError(
            f"{path} lacks {', '.join(missing)}: not written by this version of "
            "beam_jobs.preprocess"
        )
    manifest = Manifest(**{k: v for k, v in data.items() if k in names}, dir=preprocess_dir)
    if trainable and not manifest.valid:
        raise PreprocessOutputError(
            f"{preprocess_dir} failed validation (see its anomalies); refusing to use it"
        )
    if trainable:
        for name in TRANSFORMED:
            manifest.artifact(name)
    return manifest
