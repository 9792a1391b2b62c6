"""Data-quality checks on landed change batches, run before the mirror applies them.

Checks per table batch: the Parquet files hold as many rows as the manifest says (a batch
was not truncated), emission sequence numbers are exactly ``0..n-1``, no key column is
null (except on a truncate marker ``t``, which has no key), every operation is one of
``c``/``u``/``d``/``r``/``t``, and (optionally) the batch is not
larger than a limit. A failure raises :class:`~dagfoundry.errors.DataQualityError`
naming the source, table, batch and figures; that table's mirror is then not updated
(the check tasks catch it per table, so the other tables are mirrored).

A batch that passes gets a record under ``_cdc_state/<source>/quality/<table>/``. The
mirror plan applies only recorded batches and checks any other itself first
(:func:`require_checked`): a batch landed just before a crash, whose check never ran,
is checked before it is mirrored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from dagfoundry.cdc import landing
from dagfoundry.errors import DataQualityError

_VALID_OPS = ("c", "u", "d", "r", landing.TRUNCATE_OP)


def check_batch(lake_root: Path, source: str, table_id: str, batch_id: int, *, max_rows: int | None = None) -> dict:
    """Check one landed table batch; return its figures (row count, ops).

    :raises DataQualityError: naming the table, the batch and what is wrong
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    where = f"{source}/{table_id} batch {batch_id}"
    manifest = landing.read_manifest(lake_root, source, table_id, batch_id)
    keys = manifest["key_columns"]
    rows = pq.read_table(landing.batch_path(lake_root, source, table_id, batch_id), columns=[*keys, landing.OP, landing.SEQ])
    problems = []
    if rows.num_rows != manifest["row_count"]:
        problems.append(f"{rows.num_rows} rows in the files but {manifest['row_count']} in the manifest")
    if rows.num_rows == 0:
        problems.append("the batch is empty (a landed batch always holds at least one event)")
    keyed = rows.filter(pc.not_equal(rows.column(landing.OP), landing.TRUNCATE_OP)) if rows.num_rows else rows
    for key in keys:
        nulls = keyed.column(key).null_count
        if nulls:
            problems.append(f"{nulls} of {rows.num_rows} rows have a null key column {key!r}")
    seq = rows.column(landing.SEQ)
    if rows.num_rows and (pc.min(seq).as_py() != 0 or pc.max(seq).as_py() != rows.num_rows - 1 or pc.count_distinct(seq).as_py() != rows.num_rows):
        problems.append(f"{landing.SEQ} is not exactly 0..{rows.num_rows - 1}")
    bad_ops = pc.sum(pc.invert(pc.is_in(rows.column(landing.OP), value_set=pa.array(_VALID_OPS)))).as_py() or 0
    if bad_ops:
        problems.append(f"{bad_ops} rows have an operation outside {_VALID_OPS}")
    if max_rows is not None and rows.num_rows > max_rows:
        problems.append(f"{rows.num_rows} rows exceed the limit of {max_rows}")
    if problems:
        raise DataQualityError(f"CDC batch check failed for {where}: " + "; ".join(problems))
    figures = {"rows": rows.num_rows, "ops": manifest.get("ops", {}), "special_values": manifest.get("special_values", {})}
    _write_record(lake_root, source, table_id, batch_id, figures)
    return figures


def quality_failure(table_id: str, error: Exception) -> str:
    """Return the message for a table whose landed batches failed their quality checks."""
    return (
        f"table {table_id} is not mirrored: {error}. Its batches stay unmirrored and are checked again "
        "by the next run; the other tables were mirrored. Fix the cause in the source (e.g. a special "
        "value in a key column), then run the reset_offsets action (the mirror then rebuilds from a new "
        "snapshot and ignores the failed batches)"
    )


def _record_path(lake_root: Path, source: str, table_id: str, batch_id: int) -> Path:
    from dagfoundry.cdc.embedded_capture import state_dir

    return state_dir(Path(lake_root), source) / "quality" / table_id / f"{landing.format_batch_dir(batch_id)}.json"


def _write_record(lake_root: Path, source: str, table_id: str, batch_id: int, figures: dict) -> None:
    path = _record_path(lake_root, source, table_id, batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures, sort_keys=True))
    os.replace(tmp, path)


def passed(lake_root: Path, source: str, table_id: str, batch_id: int) -> bool:
    """Return whether a batch has passed its checks (it has a quality record)."""
    return _record_path(lake_root, source, table_id, batch_id).is_file()


def require_checked(lake_root: Path, source: str, table_id: str, batch_ids: Sequence[int], *, max_rows: int | None = None) -> list[int]:
    """Check every batch without a quality record now; return the batches checked here.

    :raises DataQualityError: listing every failing batch (nothing may be mirrored then)
    """
    todo = [b for b in batch_ids if not passed(lake_root, source, table_id, b)]
    if todo:
        check_batches(lake_root, source, todo, tables=[table_id], max_rows=max_rows)
    return todo


def check_batches(
    lake_root: Path,
    source: str,
    batch_ids: Sequence[int] | None = None,
    *,
    tables: Sequence[str] | None = None,
    after: int | None = None,
    max_rows: int | None = None,
) -> dict:
    """Check landed batches of a source; return ``{table_id: {batch_id: figures}}``.

    :param batch_ids: the batches to check (e.g. the capture's batch id); when None, every
        batch after ``after``
    :param tables: ``schema.table`` ids; all landed tables when None
    :param max_rows: optional upper bound on a batch's rows
    :raises DataQualityError: listing every failing batch
    """
    figures: dict[str, dict[str, dict]] = {}
    failures = []
    for table_id in tables if tables is not None else landing.list_landed_tables(lake_root, source):
        present = landing.list_batches(lake_root, source, table_id, after=after)
        wanted = present if batch_ids is None else [b for b in batch_ids if b in present]
        for batch_id in wanted:
            try:
                figures.setdefault(table_id, {})[str(batch_id)] = check_batch(lake_root, source, table_id, batch_id, max_rows=max_rows)
            except DataQualityError as exc:
                failures.append(str(exc))
    if failures:
        raise DataQualityError("\n".join(failures))
    return figures
