"""Opening a RocksDB store so that it keeps its tuning when it is reopened.

rocksdict applies the options it is given to the database and to column
families it creates. An existing store is reopened with the column family
options saved in its OPTIONS file and an 8 MiB block cache: block cache size
and the rest of the table tuning silently vanish on the first restart
(quix-streams met the same, quixio/quix-streams #1136). Giving the options
for the default column family too keeps them. Both RocksDB stores here open
through this: the edge's offers (edge/store.py) and the worker's Faust table
(pipeline/state_store.py).
"""

from __future__ import annotations

from pathlib import Path

from rocksdict import AccessType, Options, Rdict


def open_keeping_options(path: Path, options: Options,
                         access_type: AccessType | None = None) -> Rdict:
    return Rdict(str(path), options=options, column_families={"default": options},
                 access_type=access_type or AccessType.read_write())
