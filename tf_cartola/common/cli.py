"""What every command-line entry point does first: our progress on stderr, library chatter only
with -v.
"""

import argparse
import atexit
import difflib
import logging
import os
import sys
import traceback
import typing
import warnings

OURS = ("tf_cartola", "beam_jobs", "serving")
UNEXPECTED = 70  # sysexits' EX_SOFTWARE: a failure no other exit status describes.


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose `parse_args` names a misspelt flag first, with the closest known
    one, before any other complaint (argparse would first say a required flag is missing).
    `parse_known_args`, which the Beam jobs use to pass Beam's flags on, is argparse's own.
    """

    def parse_args(self, args=None, namespace=None):
        known = [flag for action in self._actions for flag in action.option_strings]
        for token in sys.argv[1:] if args is None else args:
            if token == "--":
                break
            name = token.split("=", 1)[0]
            if name.startswith("--") and not any(flag.startswith(name) for flag in known):
                close = difflib.get_close_matches(name, known, n=1)
                self.error(
                    f"unknown flag {name}" + (f" (did you mean {close[0]}?)" if close else "")
                )
        return super().parse_args(args, namespace)


def parser(module: str, doc: str, exit_status: str) -> argparse.ArgumentParser:
    """The argument parser every entry point starts from.

    Args:
      module: the entry point's module, shown as `python -m MODULE` in usage lines.
      doc: its docstring; the first line describes it.
      exit_status: what each exit status means, shown under --help.

    Every parser has -v / --verbose (the libraries' logs and warnings back; see setup_logging).
    """
    out = _Parser(
        prog=f"python -m {module}",
        description=doc.splitlines()[0],
        epilog=f"exit status: {exit_status}; {UNEXPECTED} an unexpected failure (one line; "
        "-v adds the traceback)",
    )
    out.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the libraries' logs and warnings (TensorFlow, Beam, TFDV, tf.Transform)",
    )
    return out


class _StderrHandler(logging.StreamHandler):
    """Writes to `sys.stderr` as it is when a record is emitted, not as it was when logging was set
    up: a server thread logging after the caller swapped or closed its stderr (pytest's capture
      does) still logs.
    """

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def setup_logging(verbose: bool) -> None:
    """Configures logging; call before TensorFlow is imported, so its C++ log level can still be
    set.

    Without `verbose`: our loggers at INFO, the libraries' only from ERROR up (no "cache
    key varies" or deprecation notes), TensorFlow's C++ logs (CUDA plugin registration on
    a CPU-only machine) off, FutureWarnings and DeprecationWarnings from client
    libraries hidden.
    """
    root = logging.getLogger()
    for earlier in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(earlier)  # Set up again (tests call several entry points): never stack.
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    # Libraries set their own loggers' levels when imported (absl does), so filter at the handler.
    handler.addFilter(
        lambda record: record.name.split(".")[0] in OURS or record.levelno >= logging.ERROR
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def run(main: typing.Callable[[], int]) -> int:
    """Runs an entry point's `main()` and returns its exit status; a failure it does not handle is
    one line on stderr and exit status UNEXPECTED, with the traceback above it under -v.
    """
    try:
        return main()
    # Whatever it is, the user gets one line and a status --help lists.
    except Exception as e:
        if {"-v", "--verbose"} & set(sys.argv[1:]):
            traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0]
        print(
            f"error: unexpected {type(e).__name__}: {first} (-v shows the traceback)",
            file=sys.stderr,
        )
        return UNEXPECTED


def leave(status: int) -> typing.NoReturn:
    """Ends the process with `status`. Once TensorFlow is loaded, Python's exit handlers run, the
    output is flushed, and the process ends without the interpreter's teardown, which TensorFlow
    does not survive cleanly: a loaded TF1 graph (tf.Transform's, in every export) has its
    functions' destructors fail noisily ("Exception ignored in: AtomicFunction.__del__"), and
    once a filesystem plugin has been used the AWS SDK inside tensorflow-io aborts the exit
    ("pure virtual method called", status 134).
    """
    if "tensorflow" not in sys.modules:
        sys.exit(status)
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
