"""Forward+backward time per sample of the multimodal branches as a loop vs grouped convs, beside the baseline.

2-band first-order early-fusion network (concat), 64x64 cutouts, batch 32, 180 bins, at widths 1.0 and 0.1, for
5 (ugriz) and 9 (ugrizyjhk) bands; on the CPU and, when available, CUDA. One step is a forward pass, the
classification + regression loss and a backward pass (no optimizer step). Median of ``--repeats`` timed steps
after ``--warmup`` untimed ones; "x base" is the time over the baseline's on the same device.

Usage: ``python bench/bench_nn_forms.py [--threads N] [--repeats R] [--device cpu cuda] [--bands 5 9] [--widths 1 0.1]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pipeline.nn import build_model
from pipeline.steps.train import regression_loss

BANDS = list("ugrizyjhk")
N_BINS, SIZE, BATCH = 180, 64, 32
FORMS = [("baseline", "baseline", {}), ("loop", "multimodal", {"branch_form": "loop"}),
         ("grouped", "multimodal", {"branch_form": "grouped"})]  # fmt: skip


def step_time(model, x, ebv, y, z, warmup: int, repeats: int) -> float:
    """Median seconds of one forward + loss + backward step."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        logits, zr = model(x, ebv)
        loss = torch.nn.functional.cross_entropy(logits, y) + regression_loss(zr, z, "mae")
        model.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", nargs="+", default=["cpu", "cuda"])
    ap.add_argument("--bands", nargs="+", type=int, default=[5, 9], help="numbers of bands (first of ugrizyjhk)")
    ap.add_argument("--widths", nargs="+", type=float, default=[1.0, 0.1])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [d for d in args.device if d != "cuda" or torch.cuda.is_available()]
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    print(f"batch {BATCH}, {SIZE}x{SIZE}, 2-band 1st-order early concat; ms per sample (fwd+bwd); {args.threads} thr")
    print(f"{'device':6s} {'bands':>5s} {'width':>5s} " + " ".join(f"{f:>9s}" for f, _, _ in FORMS)
          + f" {'loop/base':>9s} {'grp/base':>9s} {'grp/loop':>9s}")  # fmt: skip
    for dev in devices:
        for nb in args.bands:
            for width in args.widths:
                g = torch.Generator().manual_seed(0)
                x = torch.randn(BATCH, nb, SIZE, SIZE, generator=g).to(dev)
                ebv = torch.rand(BATCH, generator=g).to(dev) * 0.1
                y = torch.randint(0, N_BINS, (BATCH,), generator=g).to(dev)
                z = torch.rand(BATCH, generator=g).to(dev)
                ms = []
                for _, name, opts in FORMS:
                    model = build_model(name, BANDS[:nb], N_BINS, SIZE, width=width, **opts).to(dev).train()
                    ms.append(step_time(model, x, ebv, y, z, args.warmup, args.repeats) / BATCH * 1e3)
                base, loop, grp = ms
                print(f"{dev:6s} {nb:5d} {width:5.1f} " + " ".join(f"{m:9.3f}" for m in ms)
                      + f" {loop / base:9.2f} {grp / base:9.2f} {grp / loop:9.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
