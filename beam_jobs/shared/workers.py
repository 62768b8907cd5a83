"""Checks that a portable runner's workers start and can import the jobs, before a job runs on
them.

On a portable runner (PortableRunner, FlinkRunner, SparkRunner) the Python workers run in an
environment of their own: a worker pool (EXTERNAL), a container (DOCKER) or a command (PROCESS). A
worker that cannot start (no apache_beam on the pool's Python) never connects, and Beam waits for
it forever; one that starts without this package fails the first bundle. So the jobs first run a
one-element pipeline on the workers that imports the job's modules and reports where they come
from, and give up after `--worker_start_timeout` seconds with what is known of the reason.
"""

import json
import logging
import os
import subprocess
import sys
import typing

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions

log = logging.getLogger(__name__)

PORTABLE_RUNNERS = ("PortableRunner", "FlinkRunner", "SparkRunner")
SEPARATE_ENVIRONMENTS = ("EXTERNAL", "DOCKER", "PROCESS")


class WorkerOptions(PipelineOptions):
    """The jobs' own pipeline flag (Beam lists it with its own)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--worker_start_timeout",
            type=float,
            default=300.0,
            help="seconds a portable runner's workers get to start and import the jobs "
            "before the job fails (default: %(default)s)",
        )


class WorkersUnavailable(RuntimeError):
    """The runner's workers did not start, or cannot import the jobs."""


_NAMESPACE, _FOUND = "cartola.workers", "environment"


def _environment(_) -> None:
    """Runs on a worker: imports what the jobs' transforms need and reports where it comes from."""
    import json
    import sys
    from importlib import metadata

    import tensorflow_data_validation  # noqa: F401
    import tensorflow_transform  # noqa: F401
    from apache_beam.metrics import Metrics

    import beam_jobs.shared.transforms  # noqa: F401
    import tf_cartola

    found = {
        "python": sys.executable,
        "tf_cartola": tf_cartola.__file__,
        "versions": {n: metadata.version(n) for n in ("apache-beam", "tensorflow", "tf_cartola")},
    }
    Metrics.string_set(_NAMESPACE, _FOUND).add(json.dumps(found, sort_keys=True))


def separate(options: PipelineOptions) -> bool:
    """True when the runner's workers run outside this process, in an environment of their own."""
    runner = options.view_as(StandardOptions).runner or ""
    environment = (options.view_as(PortableOptions).environment_type or "").upper()
    return runner in PORTABLE_RUNNERS and environment in SEPARATE_ENVIRONMENTS


def runner(options: PipelineOptions, paths: typing.Sequence[str] = ()) -> dict:
    """The manifest's record of the runner: its name (read before the pipeline runs, which clears
    it on a portable runner) and, where the workers run apart, what `check` found of them.

    Args:
      options: the pipeline's options.
      paths: the job's inputs and outputs, checked to be reachable by its workers.

    Raises:
      WorkersUnavailable: as `check`, or a local path given to a runner whose workers run on
        other machines (Dataflow), before any work.
    """
    name = options.view_as(StandardOptions).runner or "DirectRunner"
    if name.endswith("DataflowRunner"):
        local = [p for p in paths if p and "://" not in p]
        if local:
            raise WorkersUnavailable(
                f"{name}'s workers run on other machines and cannot reach the local path "
                f"{local[0]}: give a gs:// path"
            )
    return {"name": name, **(check(options) or {})}


def check(options: PipelineOptions) -> typing.Optional[dict]:
    """Runs `_environment` on a worker: returns where the runner's workers run and what they import
    from (None where the workers are this process).

    The check runs in a child process: a runner waiting for a worker that never connects holds
    threads that nothing can stop, and only the end of their process ends them.

    Raises:
      WorkersUnavailable: no worker answered within --worker_start_timeout seconds, or one failed
        to import the jobs (the worker's error is in the message).
    """
    if not separate(options):
        return None
    timeout = options.view_as(WorkerOptions).worker_start_timeout
    log.info(
        "checking that the workers (%s) start and import the jobs, for up to %.0f s",
        _where(options),
        timeout,
    )
    # Run by reference (not as __main__), so the workers must import this module to run the probe.
    argv = [
        sys.executable,
        "-c",
        "import sys; from beam_jobs.shared.workers import main; main(sys.argv[1:])",
        json.dumps(options.get_all_options(drop_default=True)),
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + _GRACE_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise WorkersUnavailable(_silent(options, timeout)) from e
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise WorkersUnavailable(
            lines[-1] if lines else f"the worker check exited {done.returncode}"
        )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    log.info("the workers run %s", found["workers"])
    return found


_GRACE_SECONDS = 60  # The child's own start-up and the runner's, beyond the workers' time.


def _where(options: PipelineOptions) -> str:
    portable = options.view_as(PortableOptions)
    return f"{portable.environment_type} environment {portable.environment_config or ''}".strip()


def _silent(options: PipelineOptions, timeout: float) -> str:
    return (
        f"no worker ({_where(options)}) answered within {timeout:.0f} s: the worker process did "
        "not start. Its error is in the worker pool's or container's log; a pool started from a "
        "Python without apache_beam (its bin/ not first on PATH) says 'No module named "
        "apache_beam'. Raise --worker_start_timeout for slow-starting workers."
    )


def _probe(options: PipelineOptions) -> dict:
    """Runs the one-element pipeline on the workers (in the child process)."""
    timeout = options.view_as(WorkerOptions).worker_start_timeout
    p = beam.Pipeline(options=options)
    _ = p | "WorkerProbe" >> beam.Create([None]) | "ImportJobs" >> beam.Map(_environment)
    try:
        result = p.run()
        state = result.wait_until_finish(duration=int(timeout * 1000))
    except Exception as e:  # The worker's own error: a module it cannot import, a bad environment.
        raise WorkersUnavailable(
            f"the workers ({_where(options)}) cannot run the jobs: "
            f"{' '.join(str(e).split())[-600:]}"
        ) from e
    if state != beam.runners.runner.PipelineState.DONE:
        result.cancel()
        raise WorkersUnavailable(_silent(options, timeout))
    found = [
        json.loads(text)
        for metric in result.metrics().query(MetricsFilter().with_namespace(_NAMESPACE))[
            "string_sets"
        ]
        for text in metric.committed or ()
    ]
    return {"environment": _where(options), "workers": found}


def main(argv) -> None:
    """The child process: prints what `_probe` found as JSON, or the reason on stderr (exit status
    3).
    """
    try:
        print(json.dumps(_probe(PipelineOptions.from_dictionary(json.loads(argv[0])))), flush=True)
        status = 0
    # One line for the launcher, whatever went wrong (a bad option, an unreachable runner).
    except Exception as e:
        print(
            e
            if isinstance(e, WorkersUnavailable)
            else f"the worker check failed: {type(e).__name__}: {e}",
            file=sys.stderr,
            flush=True,
        )
        status = 3
    # Threads waiting for a worker that never came would hold a normal exit forever.
    os._exit(status)


def serve_pool(port: int, beam_args: typing.Sequence[str] = ()):
    """Starts a worker pool on `port` (every interface, as Beam's own) whose workers are threads of
    this process, after making TensorFlow and Beam reach every object store (see
    beam_jobs.worker_pool); returns its gRPC server.

    Raises:
      ValueError: a TensorFlow filesystem plugin is not installed.
    """
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    from tf_cartola.common import files

    files.reach(*(f"{scheme}://" for scheme in files.PLUGINS))
    FileSystems.set_options(PipelineOptions(list(beam_args)))
    address, server = BeamFnExternalWorkerPoolServicer.start(use_process=False, port=port)
    log.info(
        "worker pool listening at %s (workers are threads of process %d)", address, os.getpid()
    )
    return server
