"""The local server's settings that TF Serving has flags for, with TF Serving's defaults, and the
check of its ports: no TensorFlow here, so the command line answers before it loads anything.
"""

import dataclasses
import socket

DEFAULT_MAX_REQUEST_BYTES = 16 << 20


class PortInUse(OSError):
    """A port the server was told to listen on is taken."""


def check_port(host: str, port: int, flag: str) -> None:
    """Raises PortInUse, naming the flag that chose it, when `port` cannot be bound on `host` now
    (0, any free port, always can).

    Args:
      host: the address the server will bind.
      port: the port (0: any free one).
      flag: the flag that chose it, for the message.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As the servers bind: TIME_WAIT is no conflict.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise PortInUse(
                f"port {port} on {host} is in use ({e.strerror}); choose another with {flag}"
            ) from None


@dataclasses.dataclass(frozen=True)
class LoadRetries:
    """TF Serving's --max_num_load_retries and --load_retry_interval_micros (its defaults): a
    version that fails to load (say, one still being copied to an object store) is tried again this
    many times, this long apart, before it is given up (state END, with the error).
    """

    max_retries: int = 5
    interval_seconds: float = 60.0
