"""This node's name in log paths: its first non-loopback IPv4 address."""

from __future__ import annotations

import socket

import psutil


def node_name() -> str:
    """The node's IP address, as Azure names node log folders; 127.0.0.1 if none."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith(
                "127."
            ):
                return address.address
    return "127.0.0.1"
