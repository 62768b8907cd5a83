"""Training, evaluation and blessing: `train(config) -> result`, the library behind
tf_cartola.train.
"""

import dataclasses
import datetime
import hashlib
import json
import logging
import posixpath
import typing

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from tf_cartola.common import files, timing
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import features as F
from tf_cartola.contract import manifest as manifest_lib
from tf_cartola.contract import months
from tf_cartola.export import saved_model as export_lib
from tf_cartola.export import scoring
from tf_cartola.export import served as served_lib
from tf_cartola.export import store as model_store
from tf_cartola.read import examples
from tf_cartola.train import builder as model_lib
from tf_cartola.train import metrics as metrics_lib
from tf_cartola.validate import baseline as baseline_lib

log = logging.getLogger(__name__)

WARMUP_ROWS = 5  # Real eval rows replayed by TF Serving before it serves a new version.


def load_transformed(pattern: str, spec: dict, feature_names) -> typing.Tuple[dict, np.ndarray]:
    """All transformed rows of one split in memory, in GLOBO_ID order: ({feature: [n, 1]}, labels
    [n]).

    The order the files hold the rows in depends on how they were read (file ranges, table
    partitions, workers); sorting by id makes the training, and so the model, independent of it.

    Args:
      pattern: the split's transformed TFRecord files (a glob, any filesystem).
      spec: the transformed feature spec (`TFTransformOutput.transformed_feature_spec()`).
      feature_names: the transformed features the model takes.
    """
    columns = {n: [] for n in (*feature_names, F.LABEL_KEY, F.ID_KEY)}
    progress = timing.Progress(log, f"loading {pattern}")
    for batch in examples.records(pattern).batch(65536):
        parsed = tf.io.parse_example(batch, spec)
        for n, values in columns.items():
            values.append(parsed[n].numpy())
        progress.add(len(columns[F.ID_KEY][-1]))
    order = np.argsort(np.concatenate(columns[F.ID_KEY]), kind="stable")
    x = {n: np.concatenate(columns[n])[order].reshape(-1, 1) for n in feature_names}
    return x, np.concatenate(columns[F.LABEL_KEY])[order]


def first_raw(pattern: str, rows: int) -> typing.List[bytes]:
    """The first `rows` serialized raw tf.Examples of one split."""
    return [r.numpy() for r in examples.records(pattern).take(rows)]


def evaluate_export(
    export_dir: str, pattern: str, threshold: float
) -> typing.Tuple[dict, np.ndarray, np.ndarray]:
    """(metrics, labels, scores) of a SavedModel's serving signature on one raw split.

    Args:
      export_dir: the SavedModel.
      pattern: the raw split's TFRecord files.
      threshold: the decision threshold of precision and recall.
    """
    labels, scores = scoring.score_split(export_dir, pattern)
    return metrics_lib.classification_metrics(labels, scores, threshold), labels, scores


def bless(
    candidate: dict,
    baseline: typing.Optional[dict],
    cfg: config_lib.BlessingConfig,
    served_version: typing.Optional[int] = None,
) -> typing.List[str]:
    """Reasons to refuse the candidate; empty means blessed. KS is checked first.

    Args:
      candidate: the new model's eval metrics.
      baseline: the served version's metrics on the same split, or None when nothing is served.
      cfg: the thresholds and the KS tolerance.
      served_version: the served version's number, named in the reason.
    """
    reasons = []
    for metric in ("ks", "auc", "precision", "recall"):
        minimum = getattr(cfg, f"min_{metric}")
        if candidate[metric] < minimum:
            reasons.append(f"{metric} {candidate[metric]:.4f} < threshold {minimum}")
    if baseline is not None and candidate["ks"] < baseline["ks"] - cfg.ks_tolerance:
        reasons.append(
            f"ks {candidate['ks']:.4f} is worse than served version {served_version}'s "
            f"{baseline['ks']:.4f} by more than {cfg.ks_tolerance}"
        )
    return reasons


PROVENANCE_FILE = "provenance.json"


def provenance(manifest: manifest_lib.Manifest, config: config_lib.Config) -> dict:
    """What a model is made of: the input files' fingerprints, the split and the training config,
    and their digest.
    """
    train = {k: v for k, v in dataclasses.asdict(config.train).items() if k != "run_dir"}
    made_of = {
        "inputs": sorted(i["fingerprint"] for i in manifest.inputs),
        "split_ratio": list(config.preprocess.split_ratio),
        "train": train,
    }
    digest = hashlib.sha256(json.dumps(made_of, sort_keys=True).encode("utf-8")).hexdigest()
    return {"fingerprint": digest, **made_of}


def used_config(
    config: config_lib.Config, manifest: manifest_lib.Manifest, serving_dir: typing.Optional[str]
) -> config_lib.Config:
    """The config as a training run uses it, for its records: the preprocessing section the data
    was prepared with (its manifest's) in the folder it was read from, and the serving folder
    pushed to (default the config's).

    Args:
      config: the config the command line gave.
      manifest: the preprocessing output trained on.
      serving_dir: the serving folder given on the command line, or None.
    """
    prepared = manifest.config.get("preprocess")
    if prepared is not None:
        config = dataclasses.replace(
            config, preprocess=config_lib.from_dict({"preprocess": prepared}).preprocess
        )
    config = config_lib.override(config, "preprocess", output_dir=manifest.dir)
    return config_lib.override(config, "serving", serving_dir=serving_dir)


def read_provenance(version_dir: str) -> typing.Optional[dict]:
    """A pushed version's provenance, or None for a version pushed without one."""
    path = files.join(version_dir, PROVENANCE_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def train(
    config: config_lib.Config,
    preprocess_dir: typing.Optional[str] = None,
    serving_dir: typing.Optional[str] = None,
    run_dir: typing.Optional[str] = None,
    force: bool = False,
    run_id: typing.Optional[str] = None,
) -> dict:
    """Trains, evaluates, blesses and (if blessed) pushes a model.

    Args:
      config: the whole config (train, blessing and serving sections are used).
      preprocess_dir: output of beam_jobs.preprocess; default `config.preprocess.output_dir`.
      serving_dir: where versions are pushed; default `config.serving.serving_dir`.
      run_dir: where this run's files go; default a new timestamped folder under
        `config.train.run_dir`.
      force: train even when a pushed version was made of the same data and config, and push even
        when the data is older than the served version's (recorded).
      run_id: the data's month, YYYY-MM; default the month the input's names carry, if any.

    Returns:
      {"run_dir", "export_dir", "metrics", "baseline", "baseline_version", "blessed", "reasons",
      "version" (None unless pushed), "seconds", ...}, as `blessing.json` records it, plus what
      only this process can use: "model" (the trained tf_keras model), "labels" and "scores"
      (the eval split's). Without `force`, a run that would change nothing trains nothing and
      returns {"nothing_changed": True, "version", "version_dir"} (a pushed version was made of
      the same data and config) or {"backfill": True, "run_id", "served": ...} (the served
      version's data is newer).

    Raises:
      PreprocessOutputError: `preprocess_dir` is not a preprocessing output that passed validation.
      ValueError: `run_id` is not a month.
      ServedError: a models.config that cannot say what is served.
    """
    seconds = {}
    with timing.stage(seconds, "prepare"):
        manifest = manifest_lib.load(
            preprocess_dir or config.preprocess.output_dir, trainable=True
        )
        config = used_config(config, manifest, serving_dir)
        served = served_lib.served(
            config.serving.serving_dir, config.serving.model_name, config.serving.model_config_file
        )
        run_id = (
            months.check(run_id) if run_id else months.of_paths(i["path"] for i in manifest.inputs)
        )
        made_of = {**provenance(manifest, config), "run_id": run_id}
        skipped = (
            None if force else _backfill(served, run_id) or _unchanged(served.base_path, made_of)
        )
    if skipped:
        return skipped
    _warn_other_baseline(manifest, served)
    run_dir = run_dir or files.join(
        config.train.run_dir, datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    )
    export_dir = files.join(run_dir, "export")
    model, history = _fit_and_export(config, manifest, export_dir, seconds)
    with timing.stage(seconds, "evaluate"):
        candidate, labels, scores = evaluate_export(
            export_dir, manifest.artifact("raw_eval"), config.blessing.decision_threshold
        )
        baseline = (
            None
            if served.version is None
            else evaluate_export(
                served.version_dir(),
                manifest.artifact("raw_eval"),
                config.blessing.decision_threshold,
            )[0]
        )
        reasons = bless(candidate, baseline, config.blessing, served.version)
    result = {
        "run_dir": run_dir,
        "export_dir": export_dir,
        "preprocess_dir": manifest.dir,
        "run_id": run_id,
        "force": force,
        "metrics": candidate,
        "baseline": baseline,
        "baseline_version": served.version,
        "served_before": served.describe(),
        "blessed": not reasons,
        "reasons": reasons,
        "version": None,
        "version_dir": None,
        "features": list(config.train.feature_names()),
        "weights": model.get_layer("pro_probability").get_weights()[0].ravel().tolist(),
        "epochs_run": len(history.history["loss"]),
        "seconds": seconds,
        "config": dataclasses.asdict(config),
        # Anomalies of the data accepted on purpose when it was prepared.
        "accepted": manifest.accepted,
    }
    _write_export_records(export_dir, result, made_of)
    if not reasons:
        with timing.stage(seconds, "push"):
            result["version"] = model_store.push(export_dir, served.base_path)
            result["version_dir"] = model_store.version_dir(served.base_path, result["version"])
    result["served"] = served_lib.served(
        config.serving.serving_dir, config.serving.model_name, config.serving.model_config_file
    ).describe()
    _write_run_records(run_dir, result, history.history)
    append_decision(served.base_path, result)
    return {**result, "model": model, "labels": labels, "scores": scores}  # In-process use only.


def _fit_and_export(config: config_lib.Config, manifest, export_dir: str, seconds: dict):
    """Loads the transformed splits, fits the model and exports it: (model, history)."""
    feature_names = config.train.feature_names()
    with timing.stage(seconds, "load"):
        tft_output = tft.TFTransformOutput(manifest.artifact("transform"))
        spec = tft_output.transformed_feature_spec()
        splits = [
            load_transformed(manifest.artifact(f"transformed_{w}"), spec, feature_names)
            for w in ("train", "eval")
        ]
    with timing.stage(seconds, "train"):
        model, history = fit(feature_names, config.train, *splits)
    with timing.stage(seconds, "export"):
        export_model(
            model,
            tft_output,
            feature_names,
            export_dir,
            first_raw(manifest.artifact("raw_eval"), WARMUP_ROWS),
            manifest,
            config.serving.model_name,
        )
    return model, history


def _unchanged(base_path: str, made_of: dict) -> typing.Optional[dict]:
    """The "nothing changed" result when a pushed version (the newest such) was made of the same
    data and config.
    """
    for version in reversed(model_store.versions(base_path)):
        version_dir = model_store.version_dir(base_path, version)
        if (read_provenance(version_dir) or {}).get("fingerprint") == made_of["fingerprint"]:
            return {"nothing_changed": True, "version": version, "version_dir": version_dir}
    return None


def _backfill(served, run_id: typing.Optional[str]) -> typing.Optional[dict]:
    """The "backfill: not pushed" result when the data is of an earlier month than the served
    version's (both known).
    """
    if served.version is None or run_id is None:
        return None
    served_month = (read_provenance(served.version_dir()) or {}).get("run_id")
    if served_month is None or run_id >= served_month:
        return None
    return {
        "backfill": True,
        "run_id": run_id,
        "served": served.describe(),
        "served_run_id": served_month,
    }


def _warn_other_baseline(manifest: manifest_lib.Manifest, served) -> None:
    """Warns when preprocessing compared the data with a served version of another serving folder
    than the one this run pushes to (a mistyped --serving_dir on one of the two commands).
    """
    baseline = manifest.baseline or {}
    if not baseline.get("description", "").startswith("served model"):
        return
    folder = posixpath.dirname(files.absolute(baseline["path"]).rstrip("/"))
    if folder != files.absolute(served.base_path).rstrip("/"):
        log.warning(
            "the data was compared with %s, but this run pushes to %s: another serving folder",
            baseline["path"],
            served.base_path,
        )


def _write_export_records(export_dir: str, result: dict, made_of: dict) -> None:
    """What a pushed version carries about itself: its metrics and provenance."""
    files.write_json(files.join(export_dir, "metrics.json"), result["metrics"])
    files.write_json(
        files.join(export_dir, PROVENANCE_FILE),
        {
            **made_of,
            "preprocess_dir": result["preprocess_dir"],
            "run_dir": result["run_dir"],
            "accepted": result["accepted"],
            "force": result["force"],
            "trained_at": datetime.datetime.utcnow().isoformat() + "Z",
        },
    )


def _write_run_records(run_dir: str, result: dict, history: dict) -> None:
    """The run folder's records: metrics, the epochs' history and the blessing decision."""
    files.write_json(files.join(run_dir, "metrics.json"), result["metrics"])
    files.write_json(files.join(run_dir, "history.json"), history)
    files.write_json(files.join(run_dir, "blessing.json"), result)


def fit(feature_names, hp: config_lib.TrainConfig, train_split, eval_split):
    """A seeded, deterministic fit with early stopping on the eval loss: (tf_keras model, its
    History).

    Args:
      feature_names: the transformed features the model takes.
      hp: the training section of the config (optimizer, batch size, epochs, patience, seed).
      train_split: (features, labels) as `load_transformed` returns them.
      eval_split: the same of the eval split, for early stopping.
    """
    (x_train, y_train), (x_eval, y_eval) = train_split, eval_split
    log.info(
        "training on %d rows, early stopping on %d eval rows, features %s",
        len(y_train),
        len(y_eval),
        list(feature_names),
    )
    tf_keras.utils.set_random_seed(hp.seed)
    tf.config.experimental.enable_op_determinism()
    model = model_lib.build(feature_names, hp)
    history = model.fit(
        x_train,
        y_train,
        batch_size=hp.batch_size,
        epochs=hp.epochs,
        validation_data=(x_eval, y_eval),
        shuffle=True,
        verbose=2,
        callbacks=[
            tf_keras.callbacks.EarlyStopping(
                patience=hp.early_stopping_patience, restore_best_weights=True
            )
        ],
    )
    return model, history


def export_model(
    model,
    tft_output,
    feature_names,
    export_dir: str,
    warmup_examples,
    manifest: manifest_lib.Manifest,
    model_name: str,
) -> None:
    """The SavedModel with a few serialized eval rows as warmup requests and the baseline of its
    training data.

    Args:
      model: the trained tf_keras model.
      tft_output: the fitted transform (its layer goes into the SavedModel).
      feature_names: the transformed features the model takes.
      export_dir: where the SavedModel is written.
      warmup_examples: serialized raw eval tf.Examples, replayed as warmup requests.
      manifest: the preprocessing output, whose train statistics and schema become the baseline.
      model_name: the served model's name, in the warmup requests.
    """
    warmup = [examples.from_example(s) for s in warmup_examples]
    warmup = [
        {c: row[c] for c in F.RAW_FEATURES} for row in warmup
    ]  # What a client sends: no id, no label.
    export_lib.export(model, tft_output, feature_names, export_dir, warmup, model_name)
    # New data is judged against what this version learned from.
    baseline_lib.save(manifest, export_dir, export_lib.used_raw_columns(feature_names))


def append_decision(base_path: str, result: dict) -> None:
    """Appends the blessing decision to `<base_path>.decisions.jsonl` (also on gs://)."""
    decisions = f"{base_path.rstrip('/')}.decisions.jsonl"
    tf.io.gfile.makedirs(posixpath.dirname(decisions))
    record = {
        k: result[k]
        for k in (
            "run_dir",
            "metrics",
            "baseline",
            "baseline_version",
            "blessed",
            "reasons",
            "version",
            "accepted",
            "run_id",
            "force",
            "served",
        )
    }
    with tf.io.gfile.GFile(decisions, "a") as f:
        f.write(
            json.dumps(
                {"time": datetime.datetime.utcnow().isoformat() + "Z", **record}, sort_keys=True
            )
            + "\n"
        )
