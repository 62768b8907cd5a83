"""Training, export and blessing on real (small) preprocessing output."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from beam_jobs import preprocess
from tests import reference
from tf_cartola import synthetic
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import features as F
from tf_cartola.contract import manifest as manifest_lib
from tf_cartola.contract import signatures
from tf_cartola.export import requests
from tf_cartola.export import saved_model as export
from tf_cartola.export import store as model_store
from tf_cartola.inspect import versions
from tf_cartola.read import examples
from tf_cartola.train import builder as model
from tf_cartola.train import training

# Whatever a demo left in ./serving_models is not these tests' baseline.
NO_BASELINE = [
    "--baseline",
    "none",
]


def test_model_builder_is_a_logistic_regression_over_the_named_features():
    m = model.build(["a", "b", "c"], config_lib.TrainConfig(l2=0.01))
    assert sorted(m.input_names) == ["a", "b", "c"]
    dense = m.get_layer("pro_probability")
    assert dense.get_weights()[0].shape == (3, 1) and dense.activation.__name__ == "sigmoid"
    assert m.losses  # The L2 penalty is in the loss.


def test_unknown_feature_in_config_is_an_error():
    with pytest.raises(config_lib.ConfigError, match="unknown.*'nope'"):
        config_lib.TrainConfig(features=("nope",)).feature_names()
    assert config_lib.TrainConfig(features=("all",)).feature_names() == F.TRANSFORMED_FEATURES


def test_parity_with_the_data_scientists_procedure(trained, small_csv):
    cfg, result = trained
    frame = pd.read_csv(small_csv, keep_default_na=False, na_values=[""])
    ref = reference.run(
        frame,
        cfg.train.feature_names(),
        cfg.blessing.decision_threshold,
        ratio=cfg.preprocess.split_ratio,
    )["metrics"]
    got = result["metrics"]  # Measured through the exported SavedModel's serving signature.
    assert got["rows"] == ref["rows"]
    assert got["ks"] == pytest.approx(ref["ks"], abs=0.01)
    assert got["precision"] == pytest.approx(ref["precision"], abs=0.02)
    assert got["recall"] == pytest.approx(ref["recall"], abs=0.02)


def test_run_writes_metrics_history_and_decision(trained):
    cfg, result = trained
    run = result["run_dir"]
    for name in ("metrics.json", "history.json", "blessing.json"):
        assert os.path.exists(os.path.join(run, name)), name
    assert result["blessed"] and result["version"] == 1
    base = os.path.join(os.path.dirname(os.path.dirname(result["export_dir"])), "serving")
    version_dir = os.path.join(base, cfg.serving.model_name, "1")
    assert json.load(open(os.path.join(version_dir, "metrics.json"))) == result["metrics"]
    decisions = (
        open(os.path.join(base, f"{cfg.serving.model_name}.decisions.jsonl")).read().splitlines()
    )
    assert json.loads(decisions[0])["blessed"] is True
    # The values used, not the YAML's.
    used = json.load(open(os.path.join(run, "blessing.json")))["config"]
    assert (
        used["serving"]["serving_dir"] == base
        and used["preprocess"]["output_dir"] == result["preprocess_dir"]
    )
    prepared = json.load(open(os.path.join(result["preprocess_dir"], "manifest.json")))["config"][
        "preprocess"
    ]
    assert used["preprocess"]["input"] == prepared["input"] != cfg.preprocess.input


def test_export_is_hermetic(trained, preprocess_run, small_csv, tmp_path):
    """Takes the preprocessing output away, reloads the export, compares its signatures to the
    in-process model."""
    _, result = trained
    manifest, _ = preprocess_run
    frame = synthetic.generate(1000, seed=21)
    records = frame.astype(object).where(pd.notna(frame), None).to_dict("records")
    serialized = [examples.to_example(r) for r in records]
    import tensorflow_transform as tft

    layer = tft.TFTransformOutput(manifest.artifacts["transform"]).transform_features_layer()
    transformed = layer(tf.io.parse_example(serialized, export.serving_feature_spec()))
    expected = (
        result["model"]({n: tf.expand_dims(transformed[n], -1) for n in result["features"]})
        .numpy()
        .ravel()
    )

    moved = str(tmp_path / "export")
    shutil.copytree(result["export_dir"], moved)
    _, preprocess_dir = preprocess_run
    # Renamed away (other tests still need it after).
    hidden = preprocess_dir.rstrip("/") + ".hidden"
    os.rename(preprocess_dir, hidden)
    try:
        loaded = tf.saved_model.load(moved)
        by_example = loaded.signatures["serving_default"](inputs=tf.constant(serialized))[
            "scores"
        ][:, 1]
        used = export.used_raw_columns(result["features"])
        columns = {k: tf.constant(v) for k, v in requests.to_columns(records, used).items()}
        by_column = loaded.signatures["predict_raw"](**columns)[signatures.PROBABILITY]
        by_transform = loaded.signatures["transform_features"](inputs=tf.constant(serialized))
    finally:
        os.rename(hidden, preprocess_dir)
    assert len(expected) == 1000 and 0.2 < expected.mean() < 0.8
    np.testing.assert_allclose(by_example.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(by_column.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(by_transform[signatures.PROBABILITY].numpy(), expected, atol=1e-6)


def test_serving_default_is_a_classify_signature(trained):
    _, result = trained
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(open(os.path.join(result["export_dir"], "saved_model.pb"), "rb").read())
    sig = sm.meta_graphs[0].signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/classify"
    assert list(sig.inputs) == ["inputs"] and sorted(sig.outputs) == ["classes", "scores"]


def test_shuffled_labels_are_refused_and_a_good_model_is_pushed_next(trained, small_csv, tmp_path):
    cfg, first = trained
    base = os.path.dirname(os.path.dirname(first["export_dir"]))
    serving_dir = os.path.join(base, "serving")
    frame = pd.read_csv(small_csv, keep_default_na=False, na_values=[""])
    frame[F.LABEL_KEY] = np.random.default_rng(0).permutation(frame[F.LABEL_KEY].to_numpy())
    shuffled_csv = str(tmp_path / "shuffled.csv")
    synthetic.write_csv(frame, shuffled_csv)
    preprocess.run(NO_BASELINE + ["--input", shuffled_csv, "--output_dir", str(tmp_path / "pre")])

    before = model_store.versions(os.path.join(serving_dir, cfg.serving.model_name))
    bad = training.train(cfg, str(tmp_path / "pre"), serving_dir, str(tmp_path / "bad_run"))
    assert not bad["blessed"] and bad["version"] is None
    assert any(r.startswith("ks ") for r in bad["reasons"])
    assert model_store.versions(os.path.join(serving_dir, cfg.serving.model_name)) == before

    # The same data and config as the latest pushed version: nothing to do, unless forced.
    same = training.train(cfg, first["preprocess_dir"], serving_dir, str(tmp_path / "same_run"))
    assert same == {
        "nothing_changed": True,
        "version": before[-1],
        "version_dir": os.path.join(serving_dir, cfg.serving.model_name, str(before[-1])),
    }
    assert not os.path.exists(tmp_path / "same_run")
    good = training.train(
        cfg, first["preprocess_dir"], serving_dir, str(tmp_path / "good_run"), force=True
    )
    assert good["blessed"] and good["version"] == before[-1] + 1
    assert good["baseline_version"] == before[-1]
    # Same seed, same data: the same model (training is reproducible).
    np.testing.assert_allclose(good["weights"], first["weights"], atol=1e-7)
    assert good["metrics"]["ks"] == pytest.approx(first["metrics"]["ks"], abs=1e-9)
    listed = versions.describe(os.path.join(serving_dir, cfg.serving.model_name))
    assert [r["version"] for r in listed] == model_store.versions(
        os.path.join(serving_dir, cfg.serving.model_name)
    )
    assert (
        listed[-1]["ks"] == pytest.approx(good["metrics"]["ks"])
        and listed[-1]["baseline_version"] == before[-1]
    )
    assert listed[-1]["fingerprint"] == listed[0]["fingerprint"] and listed[-1]["pushed_at"]


def test_a_candidate_is_refused_below_a_threshold_or_when_significantly_worse_than_served():
    from tf_cartola.evaluate import evaluation

    blessing = config_lib.BlessingConfig(
        min_ks=0.1, min_auc=0.5, min_precision=0.1, min_recall=0.1
    )
    cfg = config_lib.EvaluateConfig(slices=(), replicates=200)
    rng = np.random.default_rng(0)
    labels = rng.random(20000) < 0.3

    def model(noise):
        return 1 / (1 + np.exp(-(1.6 * labels - 0.8 + rng.normal(0, noise, len(labels)))))

    served = model(1.0)

    def record(scores):
        return {
            "candidate": evaluation.model_evaluation(labels, scores, {}, 0.5, cfg, {}),
            "served": {"version": 3},
            "comparison": evaluation.compare(labels, scores, served, cfg, blessing),
        }

    assert training.bless(record(model(1.0)), blessing) == []  # As good: blessed.
    [reason] = training.bless(record(model(1.6)), blessing)  # Clearly worse: refused.
    assert reason.startswith("ks is significantly worse than served version 3's: difference -")
    strict = dataclasses.replace(blessing, min_ks=0.99)
    [reason] = training.bless(record(model(1.0)), strict)
    assert reason.startswith("ks 0.") and "< threshold 0.99" in reason


def test_the_one_manifest_loader_refuses_what_is_not_a_usable_preprocessing_output(
    preprocess_run, tmp_path
):
    manifest, preprocess_dir = preprocess_run
    with pytest.raises(manifest_lib.PreprocessOutputError, match="no manifest.json"):
        manifest_lib.load(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(manifest_lib.PreprocessOutputError, match="is not JSON"):
        manifest_lib.load(str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"valid": True, "artifacts": {}}))
    with pytest.raises(
        manifest_lib.PreprocessOutputError,
        match="lacks accepted, anomalies, .*, versions: not written by this version",
    ):
        manifest_lib.load(str(tmp_path))
    failed = {
        **manifest.to_json(),
        "valid": False,
        "artifacts": {
            k: v for k, v in manifest.artifacts.items() if k not in manifest_lib.TRANSFORMED
        },
    }
    (tmp_path / "manifest.json").write_text(json.dumps(failed))
    assert not manifest_lib.load(str(tmp_path)).valid  # Readable: the report shows what failed.
    with pytest.raises(manifest_lib.PreprocessOutputError, match="failed validation"):
        manifest_lib.load(str(tmp_path), trainable=True)
    with pytest.raises(manifest_lib.PreprocessOutputError, match="has no transform"):
        manifest_lib.load(str(tmp_path)).artifact("transform")
    assert (
        manifest_lib.load(preprocess_dir, trainable=True).artifact("transform")
        == manifest.artifacts["transform"]
    )


def test_example_parser_equals_parse_example_and_takes_ints_or_floats_for_numbers():
    frame = synthetic.generate(300, seed=6)
    serialized = [
        examples.to_example(r)
        for r in frame.astype(object).where(pd.notna(frame), None).to_dict("records")
    ]
    expected = tf.io.parse_example(serialized, export.serving_feature_spec())
    got = export.parse_raw_examples(tf.constant(serialized))
    for name, sparse in expected.items():
        assert got[name].dtype == sparse.dtype
        np.testing.assert_array_equal(got[name].indices, sparse.indices, err_msg=name)
        np.testing.assert_array_equal(got[name].values, sparse.values, err_msg=name)
    swapped = tf.train.Example()
    # A float column sent as an int.
    swapped.features.feature["escalacoes"].int64_list.value.append(12)
    # An int column sent as a float.
    swapped.features.feature["anos_como_pro"].float_list.value.append(2.0)
    got = export.parse_raw_examples(tf.constant([b"", swapped.SerializeToString()]))
    assert got["escalacoes"].values.numpy().tolist() == [12.0] and got[
        "escalacoes"
    ].indices.numpy().tolist() == [[1, 0]]
    assert got["anos_como_pro"].values.numpy().tolist() == [2]
    assert got["rel_pont"].values.shape == (0,)
