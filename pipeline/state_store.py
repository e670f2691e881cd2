"""Faust's RocksDB table store, reopened with the options it was created with.

Faust 0.15 opens each table partition with rocksdict, giving only database
options, so after its first restart a worker reads per-user state through an
8 MiB block cache instead of the 2 GiB Faust configures (see
runtime/rocksdb.py). This store is Faust's, opened through
``open_keeping_options``.

Registered under the ``faust.stores`` entry point as ``positioning`` (see
pyproject.toml); the worker uses ``store="positioning://"``. The files are
Faust's own, so existing state reads back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rocksdict
from faust.stores import rocksdb as faust_rocksdb

from runtime.rocksdb import open_keeping_options


class ReopeningRocksDBOptions(faust_rocksdb.RocksDBOptions):
    def open(self, path: Path, *, read_only: bool = False) -> Any:
        if not self.use_rocksdict:
            return super().open(path, read_only=read_only)
        access = (rocksdict.AccessType.read_write() if self.ttl is None
                  else rocksdict.AccessType.with_ttl(self.ttl))
        db = open_keeping_options(path, self.as_options(), access)
        db.set_read_options(rocksdict.ReadOptions())
        return db


class Store(faust_rocksdb.Store):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rocksdb_options = ReopeningRocksDBOptions(**self.options,
                                                       use_rocksdict=self.use_rocksdict)
