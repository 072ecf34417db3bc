"""A TCP relay: connections accepted on LISTEN_HOST:LISTEN_PORT are joined to TARGET_HOST:TARGET_PORT, byte for
byte, both ways. The cluster's hosts reach the machine's PostgreSQL through it: that server listens on 127.0.0.1
only, which no network namespace reaches; the relay listens on the cluster bridge's address.

    python scripts/cluster/relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
    async def join(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            writer.close()  # the target refused: the client sees its connection closed
            return
        await asyncio.gather(_pipe(reader, t_writer), _pipe(t_reader, writer))

    server = await asyncio.start_server(join, listen_host, listen_port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay {listen_host}:{listen_port} -> {target_host}:{target_port}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
