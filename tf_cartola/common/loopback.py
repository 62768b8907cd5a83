"""Loopback helpers for the throwaway servers the project starts (tests, benchmarks, local
PostgreSQL).
"""

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server about to be started on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
