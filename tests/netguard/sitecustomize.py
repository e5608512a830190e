"""Loaded by tests through PYTHONPATH: every network attempt is logged and refused.

DNS look-ups and IP connections raise OSError and are appended to $HEMASCOPE_NET_LOG, so a
test can prove that a command never tried to reach the network.
"""

import os
import socket

_LOG = os.environ.get("HEMASCOPE_NET_LOG", "")


def _refuse(what: str) -> None:
    if _LOG:
        with open(_LOG, "a") as fh:
            fh.write(what + "\n")
    raise OSError(f"network disabled by test: {what}")


def _getaddrinfo(host, *args, **kwargs):
    _refuse(f"getaddrinfo {host}")


_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse(f"connect {address}")
    return _connect(self, address)


socket.getaddrinfo = _getaddrinfo
socket.socket.connect = _guarded_connect
