"""Faust's RocksDB table store, reopened with the options it was created with.

Faust 0.15 opens each table partition with rocksdict, giving only database
options, so after its first restart a worker reads per-user state through an
8 MiB block cache instead of the 2 GiB Faust configures (see
runtime/rocksdb.py). This store is Faust's, each partition opened through
``open_keeping_options`` (the hook runtime/compat/faust.py offers).

Registered under the ``faust.stores`` entry point as ``positioning`` (see
pyproject.toml); the worker uses ``store="positioning://"``. The files are
Faust's own, so existing state reads back.
"""

from __future__ import annotations

from pathlib import Path

import rocksdict

from runtime.compat import faust as faust_compat
from runtime.rocksdb import open_keeping_options


class ReopeningRocksDBOptions(faust_compat.RocksDBOptions):
    """Faust's options, a rocksdict partition opened keeping them (table tuning included)."""

    def open_rocksdict(self, path: Path, options: rocksdict.Options,
                       access_type: rocksdict.AccessType) -> rocksdict.Rdict:
        db = open_keeping_options(path, options, access_type)
        db.set_read_options(rocksdict.ReadOptions())
        return db


class Store(faust_compat.RocksDBStore):
    """Faust's RocksDB table store with ``ReopeningRocksDBOptions``."""

    options_class = ReopeningRocksDBOptions
