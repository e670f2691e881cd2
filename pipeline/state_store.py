"""Faust's RocksDB table store, reopened with the options it was created with.

Faust 0.15 opens each table partition with rocksdict, giving only database
options. rocksdict then reopens an existing store with the column family
options saved in it and an 8 MiB block cache, so after its first restart a
worker reads per-user state through a block cache 256 times smaller than the
2 GiB Faust configures (the edge store had the same problem, see
``edge/store.py``; quix-streams fixed it in its own store, quixio/quix-streams
#1136). This store is Faust's, with the options also given for the default
column family.

Registered under the ``faust.stores`` entry point as ``positioning`` (see
pyproject.toml); the worker uses ``store="positioning://"``. The files are
Faust's own, so existing state reads back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rocksdict
from faust.stores import rocksdb as faust_rocksdb


class ReopeningRocksDBOptions(faust_rocksdb.RocksDBOptions):
    def open(self, path: Path, *, read_only: bool = False) -> Any:
        if not self.use_rocksdict:
            return super().open(path, read_only=read_only)
        options = self.as_options()
        access = (rocksdict.AccessType.read_write() if self.ttl is None
                  else rocksdict.AccessType.with_ttl(self.ttl))
        db = rocksdict.Rdict(str(path), options=options, column_families={"default": options},
                             access_type=access)
        db.set_read_options(rocksdict.ReadOptions())
        return db


class Store(faust_rocksdb.Store):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rocksdb_options = ReopeningRocksDBOptions(**self.options,
                                                       use_rocksdict=self.use_rocksdict)
