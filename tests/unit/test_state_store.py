"""The worker's table store keeps Faust's RocksDB tuning when a partition is reopened."""

from __future__ import annotations

from pathlib import Path

from faust.stores import by_url

from pipeline.state_store import ReopeningRocksDBOptions, Store
from pipeline.worker import create_app
from runtime.settings import Settings


def test_a_reopened_partition_keeps_the_configured_block_cache(tmp_path: Path) -> None:
    # rocksdict, given database options only, reopens with an 8 MiB block cache.
    options = ReopeningRocksDBOptions(use_rocksdict=True, block_cache_size=64 * 1024 * 1024)
    path = tmp_path / "user-state-0.db"
    db = options.open(path)
    db[b"user-1"] = b"{}"
    db.close()
    db = options.open(path)
    try:
        assert db.property_int_value("rocksdb.block-cache-capacity") == 64 * 1024 * 1024
        assert db[b"user-1"] == b"{}"
    finally:
        db.close()


def test_the_worker_tables_use_this_store(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path, kafka_security="plaintext"))
    assert by_url(app.conf.store) is Store
