"""Atomic writes and the HDF5/Parquet helpers every step shares.

A killed job must never leave a file that looks complete, so every writer goes through :func:`atomic_path`:
the data is written to a temporary sibling and renamed onto the final name only once it is whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block ends without error.

    ``suffix`` defaults to the final file's suffix, so that libraries that infer the format from the name work.
    Works for files and for directories (the block creates the directory itself).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix if suffix is not None else "".join(path.suffixes), dir=path.parent
    )
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def write_parquet(df: pd.DataFrame, path) -> None:
    """Write a DataFrame to Parquet atomically, without the pandas index."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_json(obj, path) -> None:
    """Write JSON atomically, indented for people to read."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_table(path, **kwargs) -> pd.DataFrame:
    """Read a Parquet, CSV or FITS table by its extension."""
    path = Path(path)
    name = path.name.lower()
    if not path.exists():
        raise FileNotFoundError(f"table not found: {path}")
    if name.endswith(".parquet") or name.endswith(".pq"):
        return pd.read_parquet(path, **kwargs)
    if name.endswith((".csv", ".csv.gz", ".txt")):
        return pd.read_csv(path, comment="#", **kwargs)
    if name.endswith((".fits", ".fit", ".fits.gz", ".fits.bz2")):
        from astropy.table import Table

        table = Table.read(path, **kwargs)
        names = [n for n in table.colnames if len(table[n].shape) <= 1]
        return table[names].to_pandas()
    raise ValueError(f"{path}: unknown table format (expected .parquet, .csv or .fits)")
