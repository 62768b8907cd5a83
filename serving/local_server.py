"""A local, TF-Serving-compatible model server (REST and gRPC) for development and tests.

    python -m serving.local_server --model_name cartola_pro --model_base_path \
        serving_models/cartola_pro \
        --port 8500 --rest_api_port 8501

Flags are named as tensorflow_model_server's; `--model_config_file` takes the same
models.config. It binds 127.0.0.1 unless `--host` says otherwise. See README,
"Local server vs TF Serving", for what it does and does not reproduce.
"""

import argparse
import logging
import signal
import sys
import threading
import typing

# Light imports only: --help and flag errors answer before TensorFlow loads (serving.server loads
# it).
from serving import batching, model_config, monitoring, options, request_log
from serving.options import DEFAULT_MAX_REQUEST_BYTES, LoadRetries
from tf_cartola.common import cli, files

log = logging.getLogger("serving.local_server")

DRAIN_SECONDS = 10.0


# tensorflow_model_server's other flags (TF Serving 2.16): accepted, listed as ignored at start-up.
IGNORED_FLAGS = frozenset(
    """
grpc_socket_path rest_api_num_threads rest_api_timeout_in_ms rest_api_enable_cors_support
enable_per_model_batching_parameters num_load_threads num_unload_threads flush_filesystem_caches
tensorflow_session_parallelism tensorflow_session_config_file tensorflow_intra_op_parallelism
tensorflow_inter_op_parallelism use_alts_credentials ssl_config_file platform_config_file
per_process_gpu_memory_fraction saved_model_tags
grpc_channel_arguments grpc_max_threads enable_model_warmup num_request_iterations_for_warmup
remove_unused_fields_from_bundle_metagraph prefer_tflite_model num_tflite_pools
num_tflite_interpreters_per_pool enable_signature_method_name_check xla_cpu_compilation_enabled
enable_profiler thread_pool_factory_config_file mixed_precision skip_initialize_tpu
enable_grpc_healthcheck_service enable_serialization_as_tensor_content
""".split()
)
_BOOL_FLAGS = ("enable_batching", "allow_version_labels_for_unavailable_models")


def _truth(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _split_ignored(argv: typing.Sequence[str]) -> typing.Tuple[typing.List[str], typing.List[str]]:
    """(argv without TF Serving's flags this server ignores, the names of those flags)."""
    kept, ignored = [], []
    i = 0
    while i < len(argv):
        name = argv[i][2:].split("=", 1)[0] if argv[i].startswith("--") else None
        if name in IGNORED_FLAGS:
            ignored.append(name)
            if "=" not in argv[i] and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                i += 1  # --flag value
        else:
            kept.append(argv[i])
        i += 1
    return kept, ignored


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "serving.local_server", __doc__, "0 stopped by SIGINT/SIGTERM, 2 bad flags, config or port"
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default: %(default)s)")
    parser.add_argument(
        "--rest_api_port", type=int, default=8501, help="REST port (default: %(default)s)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s; TF Serving binds all)",
    )
    _model_flags(parser.add_argument_group("the models"))
    parser.add_argument(
        "--monitoring_config_file", help="a MonitoringConfig: Prometheus metrics on the REST port"
    )
    parser.add_argument(
        "--batching_parameters_file", help="a BatchingParameters (with --enable_batching)"
    )
    for flag in _BOOL_FLAGS:
        parser.add_argument(
            f"--{flag}", type=_truth, nargs="?", const=True, default=False, metavar="true|false"
        )
    _limit_flags(parser.add_argument_group("limits"))
    return parser


def _model_flags(group) -> None:
    """What is served, and how often its config and base paths are read again."""
    group.add_argument(
        "--model_name", default="default", help="with --model_base_path (default: %(default)s)"
    )
    group.add_argument("--model_base_path", help="serve this base path's latest version")
    group.add_argument(
        "--model_config_file", help="a models.config (ModelServerConfig text proto)"
    )
    group.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0,
        help="re-read --model_config_file this often; 0 (the default) never",
    )
    group.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="how often base paths are polled for versions (default: %(default)s)",
    )
    group.add_argument(
        "--max_num_load_retries",
        type=int,
        default=LoadRetries.max_retries,
        help="times a version that fails to load is tried again (default: %(default)s)",
    )
    group.add_argument(
        "--load_retry_interval_micros",
        type=int,
        default=int(LoadRetries.interval_seconds * 1e6),
        help="microseconds between those tries (default: %(default)s)",
    )


def _limit_flags(group) -> None:
    """The largest request, and the size past which a request log file is rotated."""
    group.add_argument(
        "--max_request_bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="larger requests are refused (default: %(default)s)",
    )
    group.add_argument(
        "--request_log_rotate_bytes",
        type=int,
        default=request_log.DEFAULT_ROTATE_BYTES,
        help="a request log file (logging_config in models.config) is rotated past this size "
        "(default: %(default)s)",
    )


def _read_text(path: str, what: str) -> str:
    """A config file's text, local or on any TensorFlow filesystem (TF Serving reads gs:// configs
    too).
    """
    if not files.exists(path) or files.isdir(path):
        raise FileNotFoundError(f"the {what} {path} does not exist")
    with files.open_file(path) as f:
        return f.read()


def _watch_config(server, path: str, seconds: float, stopped: threading.Event) -> None:
    """Re-reads the model config file every `seconds` and serves what it lists (a bad file is
    logged, kept).
    """
    last = _read_text(path, "model config file")
    while not stopped.wait(seconds):
        try:
            text = _read_text(path, "model config file")
            if text != last:
                server.manager.reload(model_config.parse(text))
                last = text
                log.info("reloaded %s: serving %s", path, server.manager.model_names())
        except (OSError, model_config.text_format.ParseError) as e:
            log.error("could not reload %s (still serving the previous config): %s", path, e)


class _Refused(Exception):
    """Ends the command with exit status 2 and one line on stderr, before it serves."""


def main(argv=None) -> int:
    """The command-line entry point: serves until SIGINT or SIGTERM; returns the exit status."""
    kept, ignored = _split_ignored(list(sys.argv[1:] if argv is None else argv))
    parser = _parser()
    args = parser.parse_args(kept)
    cli.setup_logging(args.verbose)
    if ignored:
        log.info(
            "accepted and ignored (TF Serving flags this server does not implement): %s",
            " ".join(f"--{f}" for f in ignored),
        )
    if bool(args.model_base_path) == bool(args.model_config_file):
        parser.error("give exactly one of --model_base_path and --model_config_file")
    try:
        server = _started(args)
    except _Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stopped = threading.Event()
    if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
        threading.Thread(
            target=_watch_config,
            args=(
                server,
                args.model_config_file,
                args.model_config_file_poll_wait_seconds,
                stopped,
            ),
            name="config-reloader",
            daemon=True,
        ).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(
            sig,
            lambda number, _: (
                log.info("%s: draining in-flight requests", signal.Signals(number).name),
                stopped.set(),
            ),
        )
    log.info("Ctrl-C (or SIGTERM) to stop")  # Only once both signals drain instead of killing.
    stopped.wait()
    server.stop(DRAIN_SECONDS)
    log.info("stopped")
    return 0


def _started(args):
    """The server the flags describe, started; raises _Refused for a port in use, a config that
    cannot be read, or version labels of versions that are not available (unless allowed).
    """
    try:  # Before TensorFlow loads: a port in use is said at once.
        options.check_port(args.host, args.port, "--port")
        options.check_port(args.host, args.rest_api_port, "--rest_api_port")
    except options.PortInUse as e:
        raise _Refused(str(e)) from None
    from serving.server import LocalServer

    try:
        server = LocalServer(
            _model_config(args),
            args.host,
            args.port,
            args.rest_api_port,
            args.file_system_poll_wait_seconds,
            args.max_request_bytes,
            args.request_log_rotate_bytes,
            _batching_parameters(args),
            _metrics_path(args),
            LoadRetries(args.max_num_load_retries, args.load_retry_interval_micros / 1e6),
        )
    except (options.PortInUse, FileNotFoundError, ValueError) as e:
        raise _Refused(str(e)) from None
    except model_config.text_format.ParseError as e:
        raise _Refused(str(e)) from None
    server.start()
    unavailable = server.manager.unavailable_labels()
    if unavailable and not args.allow_version_labels_for_unavailable_models:
        server.stop()
        raise _Refused(
            f"version label(s) {unavailable} name versions that are not available; pass "
            "--allow_version_labels_for_unavailable_models=true to serve them once they load"
        )
    return server


def _model_config(args):
    """The models to serve: --model_config_file's, else one model of --model_name."""
    from serving.servables import single_model_config

    if args.model_config_file:
        return model_config.parse(_read_text(args.model_config_file, "model config file"))
    return single_model_config(args.model_name, args.model_base_path)


def _batching_parameters(args) -> typing.Optional[batching.BatchingParameters]:
    """With --enable_batching, the --batching_parameters_file's parameters (default ones)."""
    if not args.enable_batching:
        return None
    if not args.batching_parameters_file:
        return batching.BatchingParameters()
    return batching.parse(_read_text(args.batching_parameters_file, "batching parameters file"))


def _metrics_path(args) -> typing.Optional[str]:
    """The Prometheus path of --monitoring_config_file, or None."""
    if not args.monitoring_config_file:
        return None
    return monitoring.prometheus_path(
        _read_text(args.monitoring_config_file, "monitoring config file")
    )


if __name__ == "__main__":
    cli.leave(cli.run(main))
