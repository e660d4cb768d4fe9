#!/usr/bin/env python3
"""Independent wss:// client: Python's ssl (OpenSSL) plus the `websockets` package.

Connects to URL trusting only CA_FILE (PEM), optionally with another TLS server name (SNI and
certificate check), echoes a small text message and a 1 MiB binary message through an echo
backend (ringproxy-load's `echo` server echoes WebSocket messages), checks every byte, then does
the close handshake. Exit status 0 only if all of that worked within the timeout; otherwise a
message on stderr and status 1 (2 for bad arguments).

    scripts/wss_client.py wss://127.0.0.1:8443/ cert.pem [localhost] [--timeout 20]

Works with websockets 10.4 (Debian 12's python3-websockets) and with current releases.
"""

import argparse
import asyncio
import os
import ssl
import sys

try:
    import websockets
except ImportError:
    sys.stderr.write(
        "wss_client.py: the websockets package is missing "
        "(apt-get install python3-websockets, or pip install websockets)\n"
    )
    sys.exit(1)

BIG = 1 << 20


class Failure(Exception):
    """A check that did not hold; the message says which."""


async def exchange(url, ctx, server_name):
    kwargs = {"ssl": ctx, "max_size": 2 * BIG, "open_timeout": 10, "close_timeout": 10}
    if server_name:
        kwargs["server_hostname"] = server_name
    async with websockets.connect(url, **kwargs) as ws:
        small = "hello over wss"
        await ws.send(small)
        got = await ws.recv()
        if got != small:
            raise Failure(f"small message: sent {small!r}, got {got!r}")

        big = os.urandom(BIG)
        await ws.send(big)
        got = await ws.recv()
        if not isinstance(got, bytes):
            raise Failure(f"1 MiB message came back as {type(got).__name__}, not bytes")
        if got != big:
            first = next((i for i, (a, b) in enumerate(zip(got, big)) if a != b), min(len(got), BIG))
            raise Failure(
                f"1 MiB message: got {len(got)} bytes, first difference at offset {first}"
            )

        await ws.close(code=1000, reason="done")
        if ws.close_code != 1000:
            raise Failure(f"close handshake: server answered with code {ws.close_code}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="wss://HOST:PORT/path of an echo backend or a proxy in front of one")
    p.add_argument("ca_file", help="PEM certificate(s) to trust (e.g. a self-signed cert.pem)")
    p.add_argument(
        "server_name", nargs="?", help="TLS server name (SNI and certificate check; default: URL's host)"
    )
    p.add_argument("--timeout", type=float, default=20.0, help="seconds for everything")
    a = p.parse_args()
    if not a.url.startswith("wss://"):
        p.error("URL must start with wss://")

    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca_file)
    except (OSError, ssl.SSLError) as e:
        sys.stderr.write(f"wss_client.py: CA file {a.ca_file}: {e}\n")
        return 1
    try:
        asyncio.run(asyncio.wait_for(exchange(a.url, ctx, a.server_name), a.timeout))
    except asyncio.TimeoutError:
        sys.stderr.write(f"wss_client.py: {a.url}: timed out after {a.timeout:g} s\n")
        return 1
    except Failure as e:
        sys.stderr.write(f"wss_client.py: {a.url}: {e}\n")
        return 1
    except Exception as e:  # TLS, connection and protocol errors all mean failure
        sys.stderr.write(f"wss_client.py: {a.url}: {type(e).__name__}: {e}\n")
        return 1
    print(f"wss_client.py: {a.url}: ok (small and 1 MiB echoes verified, closed with 1000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
