"""The textbook pipeline, as TFDV, tf.Transform and Keras document it: the baseline of
bench/pipeline.py.

    python bench/textbook_pipeline.py --csv data/cartola.csv --work_dir /tmp/textbook --epochs 6 \
        [--out stages.json]

TFDV statistics of the CSV (`generate_statistics_from_csv`), `infer_schema`,
`validate_statistics`; `AnalyzeAndTransformDataset` over `CsvTFXIO` with the
same feature engineering written as tf.Transform's guides write it (per feature:
engineer, impute with `tft.mean`, `tft.scale_to_z_score`), the transformed data
written as TFRecords with `EncodeTransformedDataset`; the same logistic model
built with the Keras functional API, fitted on them for a fixed number of epochs;
`model.save` with the tf.Transform layer and a serialized tf.Example signature.
No split, quarantine, evaluation or blessing. Prints (and with --out writes)
wall seconds per stage as JSON.
"""

import argparse
import json
import os
import time

import tf_cartola  # noqa: F401  (selects tf_keras before TensorFlow is imported)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True)
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", help="also write the seconds per stage to this JSON file")
    args = parser.parse_args(argv)
    seconds, start = {}, time.perf_counter()

    def lap(stage):
        nonlocal start
        now = time.perf_counter()
        seconds[stage] = round(now - start, 2)
        start = now

    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    import tf_keras
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.public import tfxio

    from tf_cartola.contract import config as config_lib
    from tf_cartola.contract import features as F
    from tf_cartola.transform.preprocessing import engineer

    def preprocessing_fn(inputs):
        outputs = {F.LABEL_KEY: inputs[F.LABEL_KEY]}
        for column in F.RAW_FEATURES:
            value, valid = engineer(column, inputs[column])
            imputed = tf.where(valid, value, tft.mean(tf.boolean_mask(value, valid)))
            outputs[F.transformed_name(column)] = tf.cast(
                tft.scale_to_z_score(imputed), tf.float32
            )
        return outputs

    lap("import")

    stats = tfdv.generate_statistics_from_csv(args.csv)
    lap("statistics")
    schema = tfdv.infer_schema(stats)
    tfdv.validate_statistics(stats, schema)
    lap("validate")

    with open(args.csv) as f:
        header = f.readline().strip().split(",")
    raw_schema = schema_utils.schema_from_feature_spec(F.raw_feature_spec())
    source = tfxio.CsvTFXIO(args.csv, column_names=header, schema=raw_schema, skip_header_lines=1)
    transform_dir = os.path.join(args.work_dir, "transform")
    transformed_prefix = os.path.join(args.work_dir, "transformed", "data")
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=os.path.join(args.work_dir, "tmp")):
        raw = p | "ReadCsv" >> source.BeamSource()
        transformed, transform_fn = (
            raw,
            source.TensorAdapterConfig(),
        ) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn, output_record_batches=True)
        _ = (
            transformed
            | tft_beam.EncodeTransformedDataset()
            | beam.io.WriteToTFRecord(transformed_prefix, file_name_suffix=".tfrecord.gz")
        )
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    lap("transform")

    hparams = config_lib.TrainConfig()
    tft_output = tft.TFTransformOutput(transform_dir)
    spec = tft_output.transformed_feature_spec()
    files = tf.io.gfile.glob(transformed_prefix + "*")

    def to_inputs(batch):
        parsed = tf.io.parse_example(batch, spec)
        return {n: tf.expand_dims(parsed[n], -1) for n in hparams.features}, parsed[F.LABEL_KEY]

    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(hparams.batch_size)
        .map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    inputs = {name: tf_keras.Input(shape=(1,), name=name) for name in hparams.features}
    output = tf_keras.layers.Dense(1, activation="sigmoid")(
        tf_keras.layers.Concatenate()(list(inputs.values()))
    )
    model = tf_keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(hparams.learning_rate),
        loss="binary_crossentropy",
        metrics=[tf_keras.metrics.AUC()],
    )
    model.fit(dataset, epochs=args.epochs, verbose=0)
    lap("train")

    model.tft_layer = tft_output.transform_features_layer()
    raw_spec = F.raw_feature_spec(with_label=False)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples_fn(serialized):
        transformed = model.tft_layer(tf.io.parse_example(serialized, raw_spec))
        return {
            "pro_probability": model(
                {n: tf.expand_dims(transformed[n], -1) for n in hparams.features}
            )
        }

    model.save(
        os.path.join(args.work_dir, "export"),
        save_format="tf",
        signatures={"serving_default": serve_tf_examples_fn},
    )
    lap("export")
    print(json.dumps(seconds))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(seconds, f)


if __name__ == "__main__":
    main()
