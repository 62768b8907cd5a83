"""A Beam worker pool for the portable runner's EXTERNAL environment whose workers reach every
filesystem the jobs write to, object stores included.

    python -m beam_jobs.worker_pool --service_port 50000
    python -m beam_jobs.preprocess ... --runner PortableRunner --job_endpoint embed \
        --environment_type EXTERNAL --environment_config localhost:50000

Beam's own pool (`apache_beam.runners.worker.worker_pool_main`) starts each worker as a bare
`python -c` process: it never reads the job's options, so Beam's S3 filesystem has no settings
there, and it imports no filesystem plugin, so TensorFlow on the worker (tf.Transform's analyzers
write their graphs to the job's temporary folder, RunInference loads the model) cannot reach
s3://. This pool runs its workers as threads of its own process, after making both reach the
stores: every TensorFlow filesystem plugin of tf_cartola.common.files imported, and Beam's
filesystems given this command's Beam flags (for a store other than AWS's, `--s3_endpoint_url`,
or AWS_ENDPOINT_URL in the environment).

Run it from the environment the workers should have (the package's wheel and its pins: `make
worker-env`). It serves until SIGTERM or SIGINT.
"""

import signal
import sys
import threading

from tf_cartola.common import cli

EXIT_STATUS = "0 stopped by a signal, 2 bad arguments or a filesystem plugin not installed"


def _parser():
    parser = cli.parser("beam_jobs.worker_pool", __doc__, EXIT_STATUS)
    parser.add_argument(
        "--service_port", type=int, required=True, help="the pool's port on this machine"
    )
    return parser


def main(argv=None) -> int:
    """The command-line entry point: serves until a signal, returns the exit status."""
    args, beam_args = _parser().parse_known_args(argv)
    cli.setup_logging(args.verbose)
    from beam_jobs.shared import workers

    try:
        server = workers.serve_pool(args.service_port, beam_args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5).wait()
    return 0


if __name__ == "__main__":
    cli.leave(cli.run(main))
