"""Open-loop logins at a fixed rate, from a process of their own.

A tiny HTTP/1.1 keep-alive client (a pool of connections, one request in
flight on each) so that the load generator itself stays cheap: httpx costs
more CPU per request than the origin does. Each accepted login is written
as ``ticket<TAB>login_accepted_at`` to the output file.

Each run sends Idempotency-Keys of its own (a fresh nonce before the login's
index): keys repeated across runs would make every run after the first a
retry of the one before, which the worker answers without counting it.

    python -m loadtest.bench.login_load --port 8000 --rate 1000 --seconds 10 --out logins.tsv
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid

import orjson
import uvloop

RETRIES = 3


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def post(self, host: str, path: str, body: bytes, key: str) -> tuple[int, bytes]:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {key}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)


async def run(host: str, port: int, rate: float, seconds: float, out: str, seed: int) -> None:
    rng = random.Random(seed)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    opened = 0
    lines: list[bytes] = []
    failures = 0
    nonce = uuid.uuid4().hex[:12]

    async def one(i: int) -> None:
        nonlocal opened, failures
        if pool.empty() and opened < 512:
            opened += 1
            conn = Connection(*await asyncio.open_connection(host, port))
        else:
            conn = await pool.get()
        body = orjson.dumps({"user_id": f"bench-{rng.randrange(50_000)}", "ip": "81.2.69.160"})
        key = f"{nonce}-{i}"
        status, payload = await conn.post(host, "/login", body, key)
        for _ in range(RETRIES):  # a 503: the same key again, so the login counts once
            if status != 503:
                break
            await asyncio.sleep(0.1)
            status, payload = await conn.post(host, "/login", body, key)
        pool.put_nowait(conn)
        if status == 202:
            data = orjson.loads(payload)
            lines.append(f"{data['ticket']}\t{data['login_accepted_at']}\n".encode())
        else:
            failures += 1

    total = int(rate * seconds)
    started = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    with open(out, "wb") as f:
        f.writelines(lines)
    print(orjson.dumps({"sent": total, "accepted": len(lines), "failed": failures,
                        "seconds": elapsed, "connections": opened}).decode())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    uvloop.run(run(args.host, args.port, args.rate, args.seconds, args.out, args.seed))


if __name__ == "__main__":
    main()
