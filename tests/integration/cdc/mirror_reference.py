"""A pure-Python reference of the lake mirror: latest event per key by emission order."""

from __future__ import annotations

import json
from pathlib import Path

from dagfoundry.cdc import landing


def reference_mirror(
    lake_root: Path, source: str, table_id: str, after: int | None = None, *, with_special: bool = False
) -> dict[tuple, dict]:
    """Apply every landed batch of a table in emission order; return rows by key.

    :param with_special: keep each row's ``_df_special`` (values no lake type holds)
    """
    import pyarrow.parquet as pq

    rows: dict[tuple, dict] = {}
    for batch_id in landing.list_batches(lake_root, source, table_id, after=after):
        manifest = landing.read_manifest(lake_root, source, table_id, batch_id)
        keys = manifest["key_columns"]
        events = pq.read_table(landing.batch_path(lake_root, source, table_id, batch_id)).to_pylist()
        for event in sorted(events, key=lambda e: e[landing.SEQ]):
            if event[landing.OP] == landing.TRUNCATE_OP:
                rows.clear()
                continue
            key = tuple(event[k] for k in keys)
            if event[landing.DELETED]:
                rows.pop(key, None)
                continue
            row = {k: v for k, v in event.items() if not k.startswith("_df_") or (with_special and k == landing.SPECIAL)}
            # Values Debezium did not send (unchanged TOAST) keep the key's previous value.
            for column in json.loads(event.get(landing.UNAVAILABLE) or "[]"):
                if key in rows:
                    row[column] = rows[key].get(column)  # absent: added to the table since
            rows[key] = row
    return rows
