"""The bottom layer: runtime pieces every component shares.

Settings, the clock, retrying and waiting, Kafka client tuning and topics,
the HTTP server's protocol and settings, opening RocksDB, strict parsing and
the ticket secret. Nothing here imports a component (``pipeline``,
``origin``, ``edge``), the dev stack or the CLI; ``runtime.compat`` is the
only place that touches the private parts of aiokafka, Faust and uvicorn.
"""
