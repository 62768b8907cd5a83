"""Both Beam jobs built for DataflowRunner on gs:// paths and translated with Beam's --dry_run: no
network, no Google Cloud project; the job Dataflow would receive is checked, and the package it
would stage."""

import os
import tarfile

import apache_beam as beam
import pytest
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2

from beam_jobs.jobs import preprocess_pipeline
from beam_jobs.jobs import validate as validation_job
from beam_jobs.shared import inputs
from beam_jobs.shared.outputs import Layout
from tests.helpers import ROOT
from tf_cartola.contract import config as config_lib
from tf_cartola.read import csv_reader

BUCKET = "gs://tf-cartola-test"


def _translate(build):
    """(top-level step names, {staged name: local file}) of the Dataflow job `build` makes."""
    options = PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--project=tf-cartola-test",
            "--region=us-central1",
            f"--temp_location={BUCKET}/tmp",
            f"--setup_file={os.path.join(ROOT, 'setup.py')}",
            "--dry_run=True",
        ]
    )
    p = beam.Pipeline(options=options)
    build(p)
    result = p.run()
    assert result.job.proto.type.name == "JOB_TYPE_BATCH"
    proto = p.runner.proto_pipeline
    steps = {t.unique_name.split("/")[0] for t in proto.components.transforms.values()}
    staged = {}
    for environment in proto.components.environments.values():
        for artifact in environment.dependencies:
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                artifact.role_payload
            ).staged_name
            staged[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(
                artifact.type_payload
            ).path
    return steps, staged


def _package_files(staged) -> set:
    with tarfile.open(staged["workflow.tar.gz"]) as sdist:
        return {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}


def test_the_preprocessing_pipeline_translates_for_dataflow_and_stages_the_package(tmp_path):
    ranges = [
        csv_reader.Range(f"{BUCKET}/in/users-0.csv"),
        csv_reader.Range(f"{BUCKET}/in/users-1.csv.gz"),
    ]
    # tf.Transform creates its temporary folder while the graph is built, on the launcher: on
    # Dataflow that is a gs:// path (reached over the network), here a local one.
    with preprocess_pipeline.transform_context(str(tmp_path / "tft")):
        steps, staged = _translate(
            lambda p: preprocess_pipeline.build_pipeline(
                p, config_lib.PreprocessConfig(), Layout(f"{BUCKET}/runs/preprocess"), ranges
            )
        )
    assert steps >= {
        "ReadAndSplitCsv",
        "WriteQuarantine",
        "CountDuplicateIds",
        "WriteRawData[train]",
        "WriteRawData[eval]",
        "GenerateStatistics[train]",
        "GenerateStatistics[eval]",
        "WriteStatistics[train]",
        "WriteStatistics[eval]",
        "AnalyzeDataset",
        "ReadRawForTransform[train]",
        "ReadRawForTransform[eval]",
        "TransformDataset[train]",
        "TransformDataset[eval]",
        "WriteTransformedData[train]",
        "WriteTransformedData[eval]",
        "WriteTransformFn",
        "WriteRawMetadata",
    }
    files = _package_files(staged)
    assert {
        "setup.py",
        "requirements.txt",
        "beam_jobs/jobs/preprocess.py",
        "beam_jobs/shared/transforms.py",
        "tf_cartola/transform/preprocessing.py",
        "tf_cartola/validate/drift.py",
        "tf_cartola/read/csv_reader.py",
        "tf_cartola/read/prediction_logs.py",
    } <= files


@pytest.mark.parametrize("fmt", validation_job.FORMATS)
def test_the_validation_pipeline_translates_for_dataflow(fmt):
    ranges = [csv_reader.Range(f"{BUCKET}/logs/requests.00000.tfrecord")]
    steps, staged = _translate(
        lambda p: validation_job.build_pipeline(p, ranges, fmt, Layout(f"{BUCKET}/runs/validate"))
    )
    assert steps >= {"ReadRows", "WriteQuarantine", "GenerateStatistics", "WriteStatistics"}
    assert "workflow.tar.gz" in staged


class _ObjectStore(LocalFileSystem):
    """objstore://PATH is the local PATH, with an object store's checksum (CRC32C of the bytes,
    which the store keeps as metadata); every open is recorded. Stands in for gs:// where there is
    no network."""

    opened: list = []

    @classmethod
    def scheme(cls):
        return "objstore"

    def match(self, patterns, limits=None):
        results = super().match([p[len("objstore://") :] for p in patterns], limits)
        for result in results:
            result.pattern = "objstore://" + result.pattern
            for meta in result.metadata_list:
                meta.path = "objstore://" + meta.path
        return results

    def open(self, path, *args, **kwargs):
        self.opened.append(path)
        return super().open(path[len("objstore://") :], *args, **kwargs)

    def checksum(self, path):
        import google_crc32c

        with open(path[len("objstore://") :], "rb") as f:
            return google_crc32c.Checksum(f.read()).hexdigest().decode()


def test_files_on_an_object_store_are_fingerprinted_by_its_checksum_and_read_by_workers(
    tmp_path, small_csv, preprocess_run
):
    import google_crc32c

    from tf_cartola.validate import baseline

    pattern = f"objstore://{small_csv}"
    _ObjectStore.opened.clear()
    described, ranges = inputs.describe_inputs(pattern)
    with open(small_csv, "rb") as f:
        assert described == [
            {
                "path": pattern,
                "bytes": os.path.getsize(small_csv),
                "fingerprint": f"checksum:{google_crc32c.Checksum(f.read()).hexdigest().decode()}",
            }
        ]
    assert ranges == [csv_reader.Range(pattern)]  # One range: not read through on the launcher.
    assert _ObjectStore.opened == [pattern]  # Only to check the header.

    manifest = validation_job.validate(
        pattern, baseline.load(preprocess_run[1]), str(tmp_path / "out"), PipelineOptions([])
    )
    assert manifest["valid"] and manifest["rows"]["good"] == preprocess_run[0].rows["read"]
