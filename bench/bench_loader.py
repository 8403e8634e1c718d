"""Sustained random-batch samples/s of each datacube reader beside the model's training samples/s on one device.

Makes a synthetic store with :mod:`pipeline.store.cubes`'s writer (HDF5 chunked along objects, uncompressed, and the
cube Parquet beside it), then times batches of random indices drawn like an epoch's shuffle from:

- ``memory``   the cube standardised once on the device, a gather per batch
  (:class:`pipeline.store.loader.InMemoryCubes`)
- ``memmap``   out of core: raw rows through a NumPy memmap of the HDF5 file, standardised, moved to the device
- ``h5-loop``  out of core: a loop of ``ds[i]`` (the fallback for compressed stores), standardised, moved
- ``h5-fancy`` h5py fancy indexing ``ds[sorted idx]`` (raw, for reference)
- ``parquet``  the row groups holding the batch read from the cube Parquet (raw, for reference)

and a real training step of the baseline network at full width (as in ``bench_train.py``: flips and rotations,
forward, loss, backward, Adam; fp32). The loader must be at least 5 times faster than training. The page cache is warm
right after writing: on a cold cache (a cube larger than memory) the memmap reader is bound by the disk instead.

Usage::

    python bench/bench_loader.py                      # 20,000 x 5 x 64 x 64 (1.6 GB) in /tmp
    python bench/bench_loader.py --n 5000 --seconds 3 # smaller
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from bench_train import BANDS, timed  # bench/ is on sys.path when this file runs as a script

from pipeline.core.bands import sort_bands
from pipeline.core.preprocess import FoldStatistics
from pipeline.nn import build_model
from pipeline.steps.train import augment, regression_loss
from pipeline.store import cubes, loader


def make_store(path: Path, n: int, n_bands: int, size: int) -> None:
    bands = sort_bands(BANDS[n_bands])
    rng = np.random.default_rng(0)
    stats = FoldStatistics()
    with cubes.cube_writer(path, bands, size, parquet_pixels=True) as writer:
        for start in range(0, n, cubes.ROW_GROUP_OBJECTS):
            m = min(cubes.ROW_GROUP_OBJECTS, n - start)
            block = rng.standard_normal((m, n_bands, size, size), dtype=np.float32)
            writer.append(np.arange(start, start + m), block, np.ones((m, n_bands), np.float32))
            stats.add(block)
        rows = pd.DataFrame({"z_spec": rng.uniform(0, 0.4, n), "ebv": 0.02, "fold": np.arange(n) % 5})
        mean, std = stats.result(size * size, rows.fold.to_numpy(), 5)
        cubes.finish_datacube(writer, rows, mean, std, 5, {"pixel_scale_arcsec": 0.4})


def rate(fn, batch: int, n: int, seconds: float, device, min_steps: int = 3) -> float:
    """Samples/s of ``fn(idx)`` over random batches (consecutive slices of a permutation, like an epoch)."""
    perm = np.random.default_rng(1).permutation(n)
    k = 0

    def step():
        nonlocal k
        start = (k * batch) % (n - batch)
        k += 1
        fn(perm[start : start + batch])

    return timed(step, device, seconds, min_steps) * batch


def train_rate(args, device) -> float:
    """Training samples/s of the baseline network on batches already on the device."""
    torch.manual_seed(0)
    model = build_model("baseline", sort_bands(BANDS[args.bands]), args.bins, image_size=args.size, width=args.width)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, args.bands, args.size, args.size, device=device)
    ebv = torch.rand(args.batch, device=device) * 0.1
    z = torch.rand(args.batch, device=device) * 0.4
    label = (z / 0.4 * args.bins).long().clamp(max=args.bins - 1)
    gen = torch.Generator().manual_seed(0)

    def step(_idx):
        logits, z_reg = model(augment(x, gen), ebv)
        loss = F.cross_entropy(logits, label) + regression_loss(z_reg, z, "mae")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return rate(step, args.batch, 10 * args.batch, args.seconds, device, min_steps=2)


def parquet_reader(path: Path):
    f = pq.ParquetFile(path)
    per_group = f.metadata.row_group(0).num_rows

    def take(idx):
        groups = np.unique(idx // per_group)
        table = f.read_row_groups(groups.tolist(), columns=["cube"])
        local = np.searchsorted(groups, idx // per_group) * per_group + idx % per_group
        return table.column("cube").take(local).combine_chunks().values.to_numpy()

    return take


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000, help="objects in the synthetic store")
    p.add_argument("--bands", type=int, default=5, choices=sorted(BANDS))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of the network (1.0: full width)")
    p.add_argument("--bins", type=int, default=180)
    p.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per measurement")
    p.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"), help="where the synthetic store goes")
    p.add_argument("--keep", action="store_true", help="keep the synthetic store")
    p.add_argument("--skip-parquet", action="store_true", help="do not time the (slow) Parquet reader")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (photoz train's default is 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    gb = args.n * args.bands * args.size**2 * 4 / 1e9
    print(f"device: {name}; store {args.n} x {args.bands} x {args.size} x {args.size} float32 ({gb:.2f} GB)")

    workdir = Path(tempfile.mkdtemp(prefix="bench_loader.", dir=args.dir))
    path = workdir / "train.h5"
    t0 = time.perf_counter()
    make_store(path, args.n, args.bands, args.size)
    dt = time.perf_counter() - t0
    print(f"wrote HDF5 + cube Parquet in {dt:.1f} s ({2 * gb / dt * 1e3:.0f} MB/s for both)")
    try:
        with h5py.File(path, "r") as f:
            mean, std = f["norm_mean"][0], f["norm_std"][0]
        results = {}
        memory = loader.open_cubes(path, mean, std, device, max_memory_gb=1e6)
        results["memory"] = rate(memory.batch, args.batch, args.n, args.seconds, device)
        del memory
        stream = loader.open_cubes(path, mean, std, device, max_memory_gb=0)
        results["memmap"] = rate(stream.batch, args.batch, args.n, args.seconds, device)
        h5loop = loader.StreamingCubes(loader.H5Cubes(path), mean, std, device)
        results["h5-loop"] = rate(h5loop.batch, args.batch, args.n, args.seconds, device)
        with h5py.File(path, "r") as f:
            ds = f["cubes"]
            results["h5-fancy"] = rate(lambda i: ds[np.sort(i)], args.batch, args.n, args.seconds, device)
        if not args.skip_parquet:
            take = parquet_reader(cubes.cubes_parquet_path(path))
            results["parquet"] = rate(take, args.batch, args.n, min(args.seconds, 1.0), device, min_steps=2)

        train = train_rate(args, device)
        print(f"\n{'source':<10}{'samples/s':>12}{'ms/batch':>10}{'x training':>12}")
        for key, r in results.items():
            print(f"{key:<10}{r:>12.0f}{args.batch / r * 1e3:>10.2f}{r / train:>12.1f}")
        line = f"{'training':<10}{train:>12.1f}{args.batch / train * 1e3:>10.2f}{1.0:>12.1f}"
        print(f"{line}  (baseline, width {args.width})")
        best_ooc = results["memmap"]
        verdict = "OK" if min(results["memory"], best_ooc) >= 5 * train else "TOO SLOW"
        print(
            f"\nloader / training: in-memory {results['memory'] / train:.0f}x, out-of-core (memmap) "
            f"{best_ooc / train:.0f}x: {verdict} (needs >= 5x)"
        )
    finally:
        if not args.keep:
            for f in workdir.iterdir():
                f.unlink()
            workdir.rmdir()


if __name__ == "__main__":
    main()
