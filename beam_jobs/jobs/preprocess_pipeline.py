"""The preprocessing job's Beam pipeline, one read of the input: it types and splits the rows,
writes the raw splits as Parquet and the quarantine, computes TFDV statistics per split and fits
tf.Transform on train; the fitted transform is then applied to the raw splits read back from
their Parquet files.

The transform can start only once the fit has seen every train row. Reading the written splits
back, rather than holding the rows until then, keeps memory flat in the number of rows (a runner
holds a PCollection that waits for a side input: the direct runner, in memory, held 11 GB at 10M
rows), and reading Parquet costs a small part of parsing the CSV again.
"""

import typing

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.shared import counters as counters_lib
from beam_jobs.shared import transforms
from beam_jobs.shared.outputs import Layout
from tf_cartola.common import files, timing
from tf_cartola.contract import features as F
from tf_cartola.contract import split
from tf_cartola.read import csv_reader, postgres


def _raw_schema():
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_from_feature_spec(F.raw_feature_spec())


# Which stage each top-level step of the pipeline belongs to, for the manifest's seconds.
_STAGE_OF_STEP = {
    "ReadAndSplitCsv": "read_split",
    "WriteRawData": "read_split",
    "WriteQuarantine": "read_split",
    "CountDuplicateIds": "read_split",
    "GenerateStatistics": "statistics",
    "WriteStatistics": "statistics",
    "ReadRawForTransform": "transform",
    "AnalyzeDataset": "transform",
    "TransformDataset": "transform",
    "WriteTransformedData": "transform",
    "WriteTransformFn": "transform",
    "WriteRawMetadata": "transform",
}


def _stage_seconds(result) -> typing.Optional[dict]:
    """Busy seconds per stage inside the pipeline, from the runner's per-step execution times; None
    when the runner reports none (the portable, Flink, Spark and Dataflow runners report user
    metrics only).
    """
    seconds = {}
    for counter in counters_lib.runner_counters(result):
        if (
            not counter.key.metric.name.endswith("ptransform_execution_time:total_msecs:v1")
            or not counter.key.step
        ):
            continue
        stage = _STAGE_OF_STEP.get(counter.key.step.split("/")[0].split("[")[0])
        if stage:
            seconds[stage] = seconds.get(stage, 0.0) + (counter.committed or 0) / 1000
    return {k: round(v, 2) for k, v in seconds.items()} or None


def build_pipeline(p: beam.Pipeline, cfg, layout: Layout, parts: typing.Sequence) -> None:
    """Adds the job's steps to `p` (inside a `tft_beam.Context`): the read types and splits the
    rows, writes the raw splits and the quarantine, computes TFDV statistics per split and
    analyzes train; the raw splits read back are transformed. Nothing is read or written until
    the pipeline runs.

    Args:
      p: the pipeline.
      cfg: the preprocess section of the config.
      layout: where the outputs go.
      parts: the input's parts (file ranges or table partitions).
    """
    raw_schema = _raw_schema()
    read = transforms.part_reader(postgres.is_database(cfg.input), encoding=cfg.encoding)
    parsed = p | "ReadAndSplitCsv" >> transforms.ReadAndSplitCsv(parts, cfg.split_ratio, read)
    written = _describe(parsed, layout)
    again = {
        which: written[which] | f"ReadRawForTransform[{which}]" >> transforms.ReadSplit()
        for which in split.SPLITS
    }
    _transform(parsed["train"], again, layout, raw_schema)


def _describe(parsed, layout: Layout) -> dict:
    """The read's outputs: the quarantine, the duplicate ids, and per split the raw rows and their
    TFDV statistics. Returns {split: the paths of its raw files, once written}.
    """
    import tensorflow_data_validation as tfdv

    from tf_cartola.validate import drift

    quarantine = transforms.WriteQuarantine(layout.path("bad_rows", "bad_rows"))
    _ = parsed[transforms.BAD] | "WriteQuarantine" >> quarantine
    _ = parsed[transforms.IDS] | "CountDuplicateIds" >> transforms.CountDuplicateIds()
    written = {}
    for which in split.SPLITS:
        raw = transforms.WriteSplit(layout.raw(which))
        written[which] = parsed[which] | f"WriteRawData[{which}]" >> raw
        _ = (
            parsed[which]
            | f"GenerateStatistics[{which}]" >> tfdv.GenerateStatistics(drift.stats_options())
            | f"WriteStatistics[{which}]"
            >> tfdv.WriteStatisticsToBinaryFile(layout.stats(which, "binpb"))
        )
    return written


def _transform(train, again, layout: Layout, raw_schema) -> None:
    """tf.Transform: analyzed on the read's train split, applied to the raw splits read back;
    writes the transformed splits, the transform graph and the raw metadata.
    """
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata
    from tfx_bsl.public import tfxio
    from tfx_bsl.tfxio import tensor_representation_util

    from tf_cartola.transform.preprocessing import preprocessing_fn

    adapter = tfxio.TensorAdapterConfig(
        csv_reader.arrow_schema(),
        tensor_representation_util.InferTensorRepresentationsFromSchema(raw_schema),
    )
    analyze = tft_beam.AnalyzeDataset(preprocessing_fn)
    transform_fn = (train, adapter) | "AnalyzeDataset" >> analyze
    for which in split.SPLITS:
        apply = tft_beam.TransformDataset(output_record_batches=True)
        data, _ = ((again[which], adapter), transform_fn) | (f"TransformDataset[{which}]" >> apply)
        _ = data | f"WriteTransformedData[{which}]" >> transforms.WriteSplit(
            layout.transformed(which)
        )
    transform_dir = layout.path("transform")
    _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_dir)
    # Without TFX nothing else writes the raw metadata TFTransformOutput.raw_feature_spec() reads.
    raw_metadata = FileSystems.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR)
    _ = dataset_metadata.DatasetMetadata(raw_schema) | "WriteRawMetadata" >> (
        tft_beam.WriteMetadata(raw_metadata, train.pipeline)
    )


def transform_context(temp_dir: str):
    """The tf.Transform context `build_pipeline` runs in: its scratch folder, and TensorFlow's
    graph mode (`force_tf_compat_v1`).

    In graph mode tf.Transform traces `preprocessing_fn` once, where TF2 mode traces it again
    for each phase and for the saved transform graph: the same transformed values (compared to
    the last bit on 128,000 rows) and 2.5 s less per run. The transform graph is then a TF1
    SavedModel: `TFTransformOutput(dir).transform_features_layer()` loads it in eager code (the
    export embeds it so), `transform_raw_features` only in a graph.
    """
    import tensorflow_transform.beam as tft_beam

    return tft_beam.Context(temp_dir=temp_dir, force_tf_compat_v1=True)


def run_pipeline(
    cfg, layout: Layout, parts: typing.Sequence, options: PipelineOptions, temp_dir: str
) -> typing.Tuple[dict, typing.Optional[dict]]:
    """Runs `build_pipeline` (after clearing a previous run's transform outputs).

    Args:
      cfg: the preprocess section of the config.
      layout: where the outputs go.
      parts: the input's parts (file ranges or table partitions).
      options: Beam pipeline options.
      temp_dir: tf.Transform's scratch folder.

    Returns:
      (counters, seconds per stage: "construct" (building the pipeline, its libraries' imports
      included) and, where the runner reports them, its stages' busy seconds; whether it did).
    """
    files.rmtree(layout.path("transform"))  # A rerun into the same output_dir.
    files.rmtree(layout.path("transformed"))
    seconds = {}
    with beam.Pipeline(options=options) as p, transform_context(temp_dir):
        with timing.stage(seconds, "construct"):
            build_pipeline(p, cfg, layout, parts)
    busy = _stage_seconds(p.result)
    return counters_lib.of(p.result), {**seconds, **(busy or {})}, busy is not None
