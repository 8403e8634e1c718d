"""Training samples/s and inference galaxies/s of the networks, with the achieved fraction of peak FLOP/s.

Measures, side by side in one run, every combination asked for of model, number of bands, batch size, precision
(fp32 / bf16 autocast) and torch.compile (off / on), on synthetic cubes already on the device (the data path has
its own benchmark). A training step is the real one: flips and rotations, forward, cross-entropy + MAE, backward,
Adam.

Usage::

    python bench/bench_train.py                              # CPU-sized defaults
    python bench/bench_train.py --bands 5 9 --batch 32 256 --dtype fp32 bf16 --compile off on --seconds 20  # GPU
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from pipeline.core.bands import sort_bands
from pipeline.nn import build_model
from pipeline.nn.flops import count_macs
from pipeline.steps.train import augment, regression_loss

BANDS = {5: list("ugriz"), 6: list("grizy") + ["J"], 9: list("ugrizy") + ["J", "H", "Ks"]}
# dense peak TFLOP/s by device name fragment: (fp32 on CUDA cores, bf16 on tensor cores)
PEAKS = {"H100": (67.0, 989.0), "H200": (67.0, 989.0), "A100": (19.5, 312.0)}


def peak_tflops(device: torch.device, dtype: str, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (fp32, bf16) in PEAKS.items():
        if key in name:
            return bf16 if dtype == "bf16" else fp32
    return None


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, seconds: float, min_steps: int = 3) -> float:
    """Steps per second of ``fn`` after two warm-up calls, run for at least ``seconds`` and ``min_steps``."""
    fn()
    fn()
    _sync(device)
    start, steps = time.perf_counter(), 0
    while steps < min_steps or time.perf_counter() - start < seconds:
        fn()
        steps += 1
    _sync(device)
    return steps / (time.perf_counter() - start)


def bench_one(arch, n_bands, batch, dtype, compile_, args, device) -> dict:
    bands = sort_bands(BANDS[n_bands])
    torch.manual_seed(0)
    model = build_model(arch, bands, args.bins, image_size=args.size, width=args.width).to(device)
    macs = count_macs(model, n_bands, args.size)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if compile_ == "on" else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, n_bands, args.size, args.size, device=device)
    ebv = torch.rand(batch, device=device) * 0.1
    z = torch.rand(batch, device=device) * 0.4
    label = (z / 0.4 * args.bins).long().clamp(max=args.bins - 1)
    gen = torch.Generator().manual_seed(0)
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    def train_step():
        xb = augment(x, gen)
        with torch.autocast(**autocast):
            logits, z_reg = run(xb, ebv)
        loss = F.cross_entropy(logits.float(), label) + regression_loss(z_reg.float(), z, "mae")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer_step():
        with torch.autocast(**autocast):
            run(x, ebv)

    model.train()
    train_rate = timed(train_step, device, args.seconds) * batch
    model.eval()
    infer_rate = timed(infer_step, device, args.seconds) * batch
    peak = peak_tflops(device, dtype, args.peak_tflops)
    # a training step costs about three forward passes (forward, input and weight gradients); 2 FLOP per MAC
    achieved = train_rate * 6 * macs / 1e12
    return {
        "model": arch, "bands": n_bands, "batch": batch, "dtype": dtype, "compile": compile_,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "GMAC": macs / 1e9,
        "train_per_s": train_rate, "infer_per_s": infer_rate, "train_TFLOPs": achieved,
        "peak_frac": achieved / peak if peak else None,
    }  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["baseline", "multimodal"])
    p.add_argument("--bands", nargs="+", type=int, default=[5], choices=sorted(BANDS))
    p.add_argument("--batch", nargs="+", type=int, default=[32])
    p.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0: the paper's full width)")
    p.add_argument("--bins", type=int, default=180)
    p.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per measurement")
    p.add_argument("--peak-tflops", type=float, help="the device's peak, when it is not in the built-in table")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {args.size}x{args.size}, width {args.width}, {args.bins} bins")
    header = f"{'model':<11}{'bands':>6}{'batch':>6}{'dtype':>6}{'compile':>8}{'params(M)':>10}{'GMAC':>7}"
    print(header + f"{'train/s':>10}{'infer/s':>10}{'TFLOP/s':>9}{'of peak':>9}")
    for arch in args.models:
        for n_bands in args.bands:
            for batch in args.batch:
                for dtype in args.dtype:
                    for compile_ in args.compile:
                        r = bench_one(arch, n_bands, batch, dtype, compile_, args, device)
                        frac = f"{100 * r['peak_frac']:.1f}%" if r["peak_frac"] is not None else "n/a"
                        print(
                            f"{arch:<11}{n_bands:>6}{batch:>6}{dtype:>6}{compile_:>8}{r['params_M']:>10.2f}"
                            f"{r['GMAC']:>7.2f}{r['train_per_s']:>10.1f}{r['infer_per_s']:>10.1f}"
                            f"{r['train_TFLOPs']:>9.3f}{frac:>9}",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
