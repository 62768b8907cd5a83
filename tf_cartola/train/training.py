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
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from tf_cartola.common import files, timing
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import features as F
from tf_cartola.contract import manifest as manifest_lib
from tf_cartola.contract import months
from tf_cartola.evaluate import evaluation, slices
from tf_cartola.export import saved_model as export_lib
from tf_cartola.export import scoring
from tf_cartola.export import served as served_lib
from tf_cartola.export import store as model_store
from tf_cartola.read import csv_reader, splits
from tf_cartola.train import builder as model_lib
from tf_cartola.train import metrics as metrics_lib
from tf_cartola.validate import baseline as baseline_lib
from tf_cartola.validate import drift

log = logging.getLogger(__name__)

WARMUP_ROWS = 5  # Real eval rows replayed by TF Serving before it serves a new version.
VALIDATION_BATCH_SIZE = 65536  # Rows per step of the eval loss that early stopping watches.


def load_transformed(pattern: str, feature_names) -> typing.Tuple[dict, np.ndarray]:
    """All transformed rows of one split in memory, in GLOBO_ID order: ({feature: [n, 1]}, labels
    [n]), read as columns (tf_cartola.read.splits).

    The order the files hold the rows in depends on how they were read (file ranges, table
    partitions, workers); sorting by id makes the training, and so the model, independent of it.

    Args:
      pattern: the split's transformed files (a glob, any filesystem).
      feature_names: the transformed features the model takes.
    """
    table = splits.read(pattern, [*feature_names, F.LABEL_KEY, F.ID_KEY])
    log.info("loaded %d rows of %s", table.num_rows, pattern)
    columns = {n: pc.list_flatten(table.column(n)).to_numpy() for n in table.schema.names}
    if any(len(values) != table.num_rows for values in columns.values()):
        raise manifest_lib.PreprocessOutputError(
            f"{pattern}: a transformed feature without one value a row"
        )
    order = np.argsort(columns[F.ID_KEY], kind="stable")
    x = {n: columns[n][order].reshape(-1, 1) for n in feature_names}
    return x, columns[F.LABEL_KEY][order]


def first_raw(pattern: str, rows: int) -> typing.List[dict]:
    """The first `rows` typed rows of one raw split."""
    return csv_reader.to_records(splits.head(pattern, rows))


def evaluate(
    export_dir: str, served, manifest: manifest_lib.Manifest, config: config_lib.Config
) -> typing.Tuple[dict, dict, typing.List[str], np.ndarray, np.ndarray]:
    """Scores the raw eval split with the candidate and the served version and evaluates both on
    the same rows: (evaluation.json's record, the candidate's metrics, the reasons to refuse it,
    labels, candidate scores).

    Args:
      export_dir: the candidate's SavedModel.
      served: what is served (tf_cartola.export.served.Served).
      manifest: the preprocessing output (its raw eval split, its train statistics).
      config: the whole config (blessing and evaluate sections).
    """
    cfg, threshold = config.evaluate, config.blessing.decision_threshold
    models = [export_dir] + ([served.version_dir()] if served.version is not None else [])
    needed = {c for m in models for c in scoring.raw_inputs(m)}
    # The split is read once; both models score its columns through predict_raw.
    labels, columns = scoring.read_split(
        manifest.artifact("raw_eval"), sorted(needed | set(slices.columns_needed(cfg.slices)))
    )
    scores = scoring.score_columns(export_dir, columns)
    ids, edges = columns[F.ID_KEY], _quartiles(manifest, cfg)
    record = {
        "rows": int(len(labels)),
        "rows_pro": int(labels.sum()),
        "confidence": cfg.confidence,
        "bootstrap": {
            "method": "poisson (per score bin, see tf_cartola/evaluate/evaluation.py)",
            "replicates": cfg.replicates,
            "seed": cfg.seed,
        },
        "candidate": evaluation.model_evaluation(
            labels, scores, columns, threshold, cfg, edges, ids
        ),
        "served": None,
        "comparison": None,
    }
    if served.version is not None:
        served_scores = scoring.score_columns(served.version_dir(), columns)
        record["served"] = {
            "version": served.version,
            **evaluation.model_evaluation(
                labels, served_scores, columns, threshold, cfg, edges, ids
            ),
        }
        record["comparison"] = evaluation.compare(
            labels, scores, served_scores, cfg, config.blessing
        )
    reasons = bless(record, config.blessing)
    record["decision"] = "refused: " + "; ".join(reasons) if reasons else "blessed"
    record["verdict"] = verdict_line(record, config.blessing)
    candidate = metrics_lib.classification_metrics(labels, scores, threshold)
    return record, candidate, reasons, labels, scores


def _quartiles(manifest: manifest_lib.Manifest, cfg: config_lib.EvaluateConfig) -> dict:
    """Numeric feature -> its training quartiles, for the `:quartiles` slices."""
    wanted = [s.partition(":")[0] for s in cfg.slices if s.endswith(":quartiles")]
    if not wanted:
        return {}
    stats = baseline_lib.load(manifest.dir).stats
    found = drift.feature_stats(stats)
    return {name: slices.quartiles(drift.quantiles(found[name])) for name in wanted}


def bless(record: dict, cfg: config_lib.BlessingConfig) -> typing.List[str]:
    """Reasons to refuse the candidate of an evaluation record; empty means blessed. KS first:
    the thresholds on the candidate's values, then, against the served model, a refusal only when
    the candidate is significantly worse (tf_cartola/evaluate/evaluation.py, `compare`).

    Args:
      record: evaluation.json's record (candidate, served and comparison).
      cfg: the thresholds, the KS margin and the false-refusal rate.
    """
    overall = record["candidate"]["overall"]
    reasons = []
    for metric in ("ks", "auc", "precision", "recall"):
        minimum = getattr(cfg, f"min_{metric}")
        if overall[metric]["value"] < minimum:
            reasons.append(f"{metric} {overall[metric]['value']:.4f} < threshold {minimum}")
    comparison = record["comparison"]
    if comparison and comparison["significantly_worse"]:
        reasons.append(
            f"ks is significantly worse than served version {record['served']['version']}'s: "
            f"{_difference(comparison)}, p = {comparison['p_value']:.3g} < "
            f"{cfg.false_refusal_rate} (margin {cfg.ks_margin})"
        )
    return reasons


def _difference(comparison: dict) -> str:
    d = comparison["difference"]
    return f"difference {d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def verdict_line(record: dict, cfg: config_lib.BlessingConfig) -> str:
    """The decision in one line, e.g. `KS 0.612 vs served v3 0.618: difference -0.006 [-0.015,
    +0.003], not significantly worse -> blessed`.
    """
    ks = record["candidate"]["overall"]["ks"]["value"]
    if record["comparison"] is None:
        head = f"KS {ks:.3f}, nothing served: thresholds only"
    else:
        comparison = record["comparison"]
        worse = (
            "significantly worse"
            if comparison["significantly_worse"]
            else ("not significantly worse")
        )
        head = (
            f"KS {ks:.3f} vs served v{record['served']['version']} "
            f"{record['served']['overall']['ks']['value']:.3f}: {_difference(comparison)}, "
            f"{worse} (p = {comparison['p_value']:.3g}, rule: refused when p < "
            f"{cfg.false_refusal_rate} that KS is not below served - {cfg.ks_margin})"
        )
    return f"{head} -> {record['decision']}"


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
        served = _served(config)
        run_id = (
            months.check(run_id) if run_id else months.of_paths(i["path"] for i in manifest.inputs)
        )
        made_of = {**provenance(manifest, config), "run_id": run_id}
    if not force and (
        skipped := _backfill(served, run_id) or _unchanged(served.base_path, made_of)
    ):
        return skipped
    _warn_other_baseline(manifest, served)
    run_dir = run_dir or files.join(
        config.train.run_dir, datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    )
    return _trained(config, manifest, served, run_dir, made_of, force, seconds)


def _trained(config, manifest, served, run_dir: str, made_of: dict, force: bool, seconds: dict):
    """Fits, exports, evaluates and blesses; pushes a blessed model; writes the run's records.
    Returns `train`'s result.
    """
    run_id = made_of["run_id"]
    export_dir = files.join(run_dir, "export")
    model, history = _fit_and_export(config, manifest, export_dir, seconds)
    with timing.stage(seconds, "evaluate"):
        record, candidate, reasons, labels, scores = evaluate(export_dir, served, manifest, config)
    files.write_json(files.join(run_dir, "evaluation.json"), record)
    result = {
        "run_dir": run_dir,
        "export_dir": export_dir,
        "preprocess_dir": manifest.dir,
        "run_id": run_id,
        "force": force,
        **_judged(candidate, record, served, reasons),
        **_fitted(config, model, history),
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
    result["served"] = _served(config).describe()
    _write_run_records(run_dir, result, history.history)
    append_decision(served.base_path, result)
    return {**result, "model": model, "labels": labels, "scores": scores}  # In-process use only.


def _served(config: config_lib.Config) -> served_lib.Served:
    """The served version of the config's model, as it is now."""
    serving = config.serving
    return served_lib.served(serving.serving_dir, serving.model_name, serving.model_config_file)


def _judged(candidate: dict, record: dict, served, reasons: typing.List[str]) -> dict:
    """The run record's judgement: the candidate's metrics beside the served model's, the
    comparison and verdict, and whether it is blessed (not pushed yet).
    """
    return {
        "metrics": candidate,
        "baseline": _plain(record["served"]),
        "baseline_version": served.version,
        "comparison": record["comparison"],
        "verdict": record["verdict"],
        "served_before": served.describe(),
        "blessed": not reasons,
        "reasons": reasons,
        "version": None,
        "version_dir": None,
    }


def _fitted(config: config_lib.Config, model, history) -> dict:
    """The run record's model: its features, weights and epochs run."""
    return {
        "features": list(config.train.feature_names()),
        "weights": model.get_layer("pro_probability").get_weights()[0].ravel().tolist(),
        "epochs_run": len(history.history["loss"]),
    }


def _plain(evaluated: typing.Optional[dict]) -> typing.Optional[dict]:
    """A model's overall values (no intervals) from its evaluation record, or None."""
    if evaluated is None:
        return None
    return {name: value["value"] for name, value in evaluated["overall"].items()}


def _fit_and_export(config: config_lib.Config, manifest, export_dir: str, seconds: dict):
    """Loads the transformed splits, fits the model and exports it: (model, history)."""
    feature_names = config.train.feature_names()
    with timing.stage(seconds, "load"):
        tft_output = tft.TFTransformOutput(manifest.artifact("transform"))
        loaded = [
            load_transformed(manifest.artifact(f"transformed_{w}"), feature_names)
            for w in ("train", "eval")
        ]
    with timing.stage(seconds, "train"):
        model, history = fit(feature_names, config.train, *loaded)
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


def record_seconds(run_dir: str, seconds: dict) -> None:
    """Updates the run's blessing.json with stages timed after it was written (the report)."""
    path = files.join(run_dir, "blessing.json")
    files.write_json(path, {**files.read_json(path), "seconds": seconds})


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
        # The eval loss is a mean over the split, whatever the batch: large ones are fast.
        validation_batch_size=VALIDATION_BATCH_SIZE,
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
    warmup_rows,
    manifest: manifest_lib.Manifest,
    model_name: str,
) -> None:
    """The SavedModel with a few eval rows as warmup requests and the baseline of its
    training data.

    Args:
      model: the trained tf_keras model.
      tft_output: the fitted transform (its layer goes into the SavedModel).
      feature_names: the transformed features the model takes.
      export_dir: where the SavedModel is written.
      warmup_rows: typed raw eval rows (`first_raw`), replayed as warmup requests.
      manifest: the preprocessing output, whose train statistics and schema become the baseline.
      model_name: the served model's name, in the warmup requests.
    """
    # What a client sends: no id, no label.
    warmup = [{c: row[c] for c in F.RAW_FEATURES} for row in warmup_rows]
    export_lib.export(model, tft_output, feature_names, export_dir, warmup, model_name)
    # New data is judged against what this version learned from.
    baseline_lib.save(manifest, export_dir, export_lib.used_raw_columns(feature_names))


def append_decision(base_path: str, result: dict) -> None:
    """Appends the blessing decision to `<base_path>.decisions.jsonl` (also on an object store)."""
    decisions = f"{base_path.rstrip('/')}.decisions.jsonl"
    files.makedirs(posixpath.dirname(decisions))
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
            "comparison",
            "verdict",
        )
    }
    with files.open_file(decisions, "a") as f:
        f.write(
            json.dumps(
                {"time": datetime.datetime.utcnow().isoformat() + "Z", **record}, sort_keys=True
            )
            + "\n"
        )
