"""What every command-line entry point does first: our progress on stderr, library chatter only with -v."""

import argparse
import logging
import os
import warnings

OURS = ("tf_cartola", "beam_jobs", "serving")
_handler = None  # The stderr handler this module installed, if any.


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """Adds -v / --verbose: bring back the logs of TensorFlow, Beam, TFDV and tf.Transform."""
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the libraries' logs and warnings (TensorFlow, Beam, TFDV, tf.Transform)")


def setup_logging(verbose: bool) -> None:
    """Configures logging; call before TensorFlow is imported, so its C++ log level can still be set.

    Without `verbose`: our loggers at INFO, the libraries' only from ERROR up (no "cache
    key varies" or deprecation notes), TensorFlow's C++ logs (CUDA plugin registration on
    a CPU-only machine) off, FutureWarnings and DeprecationWarnings from client
    libraries hidden.
    """
    global _handler
    root = logging.getLogger()
    if _handler is not None:  # Set up again (tests call several entry points): replace, never stack.
        root.removeHandler(_handler)
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(_handler)
    root.setLevel(logging.INFO)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    # Libraries set their own loggers' levels when imported (absl does), so filter at the handler.
    _handler.addFilter(lambda record: record.name.split(".")[0] in OURS or record.levelno >= logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
