"""The modality-drop table: the one owner of the long Parquet ``photoz drop-modalities`` writes and the report reads.

One row per (variant, test object): ``object_id`` (int64), ``z_spec`` (float64), ``fold`` (int64), ``dropped``
(string: :data:`NONE` for the prediction with every modality, else the dropped modality's name) and ``z_phot``
(float64); rows ordered by variant, then by object id. The schema metadata key ``modalities`` holds the model's
modality names as a JSON list, ``dropped`` the variants in order.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline.core import io

NONE = "none"  # the ``dropped`` value of the predictions with every modality
COLUMNS = ("object_id", "z_spec", "fold", "dropped", "z_phot")


def write(table: pd.DataFrame, out, names: list[str]) -> None:
    """Parquet, atomically, with the modality order in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.Table.from_pandas(table[list(COLUMNS)], preserve_index=False)
    extra = {b"modalities": json.dumps(list(names)).encode(), b"dropped": json.dumps([NONE, *names]).encode()}
    t = t.replace_schema_metadata({**(t.schema.metadata or {}), **extra})
    with io.atomic_path(out) as tmp:
        pq.write_table(t, tmp)


def read(path) -> pd.DataFrame:
    """A modality-drop table, checked (:func:`check`), its rows with a finite ``z_spec`` and ``z_phot``."""
    return check(pd.read_parquet(path), str(path))


def check(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate a modality-drop table (long format, :data:`COLUMNS`); keep its finite rows."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: modality-drop predictions lack the column(s) {missing}")
    df = df.assign(dropped=df["dropped"].astype(str))
    ok = np.isfinite(df["z_spec"].to_numpy(float)) & np.isfinite(df["z_phot"].to_numpy(float))
    if not ok.any():
        raise ValueError(f"{source}: no row with a finite z_spec and z_phot")
    return df.loc[ok]


def read_modalities(path) -> list[str]:
    """The modality names, in the model's order, of a modality-drop table."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[b"modalities"])
