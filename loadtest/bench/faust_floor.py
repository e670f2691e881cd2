"""The Faust floor: a Faust agent that only updates one table row and produces one record per event.

The worker's design is a Faust agent with a RocksDB-backed table updated on
every login and an offer produced per login. This app does just that and
nothing else (no decoding, ranking, Avro or waiting for acks), on
the same transport and store as the worker, so its rate is the ceiling the
worker's design has on this machine. ``positioning bench`` runs it on the
worker's logins topic right after the worker and reports both.

Configured by environment variables (it runs under Faust's own CLI):
``FLOOR_BOOTSTRAP``, ``FLOOR_TOPIC``, ``FLOOR_COUNT``, ``FLOOR_DATA_DIR``,
``FLOOR_PARTITIONS``, ``FLOOR_OUT`` and ``FLOOR_MODE``: ``full`` (the
default, what the bench runs), or, to take the floor apart by hand,
``table`` (the table write only, nothing produced) and ``consume`` (each
event only counted: what Faust's stream costs by itself). It writes ``{"events": n, "seconds": s,
"events_per_s": r}`` to ``FLOOR_OUT`` (Faust takes over stdout), timed from
the first event to the last, and exits.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import faust
from faust.types import StreamT

from pipeline.transport import broker_url
from pipeline.worker import faust_credentials
from runtime.fetch_tuning import FetchTuning
from runtime.kafka_security import Role, kafka_access
from runtime.settings import Settings

# The fetch tuning the bench's worker runs with (the same environment), so the
# floor fetches the way the worker does.
FLOOR_FETCH = FetchTuning.from_settings(Settings())


def create_app(environ: dict[str, str]) -> faust.App:
    topic_name = environ["FLOOR_TOPIC"]
    count = int(environ["FLOOR_COUNT"])
    partitions = int(environ.get("FLOOR_PARTITIONS", "6"))
    app = faust.App(f"faust-floor-{uuid.uuid4().hex[:8]}",
                    broker=broker_url(environ["FLOOR_BOOTSTRAP"], FLOOR_FETCH),
                    # The bench's settings come in the environment; the floor connects
                    # as the admin role, which may use its own topics and group.
                    broker_credentials=faust_credentials(kafka_access(Settings(), Role.ADMIN)),
                    store="positioning://",
                    datadir=environ["FLOOR_DATA_DIR"], topic_partitions=partitions,
                    web_enabled=False, producer_acks=-1, producer_linger=0.002,
                    consumer_auto_offset_reset="earliest")
    source = app.topic(topic_name, key_serializer="raw", value_serializer="raw",
                       partitions=partitions)
    rows = app.Table("floor-rows", default=None, partitions=partitions, key_type=str)
    sink = app.topic(f"{topic_name}.floor", key_serializer="raw", value_serializer="raw",
                     partitions=partitions)
    progress: dict[str, Any] = {"events": 0, "started": None}
    mode = environ.get("FLOOR_MODE", "full")
    if mode not in ("full", "table", "consume"):
        raise ValueError(f"FLOOR_MODE is full, table or consume, not {mode!r}")

    @app.task
    async def quiet() -> None:
        # Debug records built for aiokafka's loggers would be measured too.
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(logging.WARNING)

    @app.agent(source)
    async def floor(stream: StreamT) -> None:
        async for event in stream.events():
            if progress["started"] is None:
                await sink.maybe_declare()  # before the clock starts
                progress["started"] = time.perf_counter()
            if mode != "consume":
                key = event.key.decode() if event.key else ""
                row = rows.get(key) or {"logins": 0}
                rows[key] = {"logins": row["logins"] + 1}
            if mode == "full":
                await app.producer.send(sink.get_topic_name(), event.key, event.value, None,
                                        None, None)
            progress["events"] += 1
            if progress["events"] == count:
                seconds = time.perf_counter() - progress["started"]
                Path(environ["FLOOR_OUT"]).write_text(json.dumps(
                    {"events": count, "seconds": seconds, "events_per_s": count / seconds}))
                # The figure is out; shutting Faust down cleanly would only add time.
                os._exit(0)

    return app


def main() -> None:
    create_app(dict(os.environ)).main()


if __name__ == "__main__":
    main()
