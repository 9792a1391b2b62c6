"""Content digests of training and holdout sets, stable across processes and machines.

The digest covers the column names, their dtypes and every value in row order, so two
frames have the same digest exactly when a model would see the same data. pandas'
``hash_pandas_object`` hashes values with a fixed key (no per-process salt).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def frame_digest(frame: pd.DataFrame) -> str:
    """Return ``sha256:<hex>`` of a frame's columns, dtypes and values (row order matters)."""
    import pandas as pd

    digest = hashlib.sha256()
    for name in frame.columns:
        digest.update(f"{name}\x1f{frame[name].dtype}\x1e".encode())
    values = pd.util.hash_pandas_object(frame, index=False)
    digest.update(values.to_numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


#: MLflow stores a dataset's digest in at most 36 characters (``MAX_DATASET_DIGEST_SIZE``).
MLFLOW_DIGEST_LENGTH = 36


def mlflow_dataset_digest(digest: str) -> str:
    """Return the digest MLflow records for a dataset: the first 36 characters of ``digest``.

    MLflow refuses longer dataset digests, so its digest is this prefix of the
    ``dagfoundry.*_digest`` tag (``sha256:`` and 29 hex digits, 116 bits); the full digest
    goes with the dataset input as its tag ``dagfoundry.digest``.
    """
    return digest[:MLFLOW_DIGEST_LENGTH]
