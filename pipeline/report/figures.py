"""Figures of the HTML report, each returned as a base64 PNG string (matplotlib Agg, no files on disk)."""

from __future__ import annotations

import base64
import io as _io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402


def to_png(fig) -> str:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def sigma_mad_binned(metrics: dict[str, dict], values: dict[str, np.ndarray]) -> str:
    """sigma_MAD against magnitude and against z_spec, all models on the same axes (paper Fig. 2).

    ``metrics`` maps model name to its metrics JSON; ``values`` maps "mag"/"z_spec" to the sample shown as the
    grey histogram (from the first model).
    """
    keys = [k for k in ("mag", "z_spec") if any(k in m.get("binned", {}) for m in metrics.values())]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(5.5 * max(len(keys), 1), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        if key in values:
            twin = ax.twinx()
            twin.hist(values[key], bins=40, color="0.85")
            twin.set_yticks([])
            ax.set_zorder(twin.get_zorder() + 1)
            ax.patch.set_visible(False)
        for i, (name, m) in enumerate(metrics.items()):
            rows = m.get("binned", {}).get(key)
            if not rows:
                continue
            x = [r["centre"] for r in rows]
            y = np.array([r["sigma_mad"] for r in rows], dtype=float) * 1e3
            err = np.array([np.nan if r["sigma_mad_fold_std"] is None else r["sigma_mad_fold_std"] for r in rows])
            color = f"C{i}"
            ax.errorbar(x, y, yerr=err * 1e3, marker="o", capsize=3, color=color, label=name)
            ax.axhline(m["sigma_mad"] * 1e3, color=color, lw=0.8, ls="--")
        ax.set_xlabel(metrics[next(iter(metrics))].get("mag_column", "magnitude") if key == "mag" else "z_spec")
        ax.set_ylabel(r"$\sigma_{MAD}$ [$10^{-3}$]")
        ax.legend(fontsize=8)
    return to_png(fig)


def density(z_spec: np.ndarray, z_phot: np.ndarray, name: str) -> str:
    """z_phot against z_spec as a 2-D histogram (log colour scale) with the one-to-one line."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    lo = float(min(np.nanmin(z_spec), np.nanmin(z_phot)))
    hi = float(max(np.nanmax(z_spec), np.nanmax(z_phot)))
    ax.hist2d(z_spec, z_phot, bins=80, range=[[lo, hi], [lo, hi]], cmap="viridis", norm=matplotlib.colors.LogNorm())
    ax.plot([lo, hi], [lo, hi], color="w", lw=0.7)
    ax.set(xlabel="z_spec", ylabel="z_phot", title=name)
    return to_png(fig)


def pit_histogram(pit_hist: dict, name: str) -> str:
    """PIT histogram from stored counts and edges, with the uniform expectation."""
    counts = np.asarray(pit_hist["counts"], dtype=float)
    edges = np.asarray(pit_hist["edges"], dtype=float)
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    ax.stairs(counts, edges, fill=True, alpha=0.6)
    ax.axhline(counts.sum() / len(counts), color="k", ls="--", lw=0.8)
    ax.set(xlabel="PIT", ylabel="count", title=name)
    return to_png(fig)


def bootstrap_panel(metric: str, r: dict) -> str:
    """Bootstrap deltas (green) and the H0-shifted ones (red) with the observed delta (blue): paper Fig. D.1."""
    counts = np.asarray(r["hist"]["counts"], dtype=float)
    edges = np.asarray(r["hist"]["edges"], dtype=float)
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.stairs(counts, edges, fill=True, color="tab:green", alpha=0.5, label="bootstrap")
    ax.stairs(counts, edges - r["delta"], fill=True, color="tab:red", alpha=0.5, label="shifted (H0)")
    ax.axvline(r["delta"], color="tab:blue", label=f"observed, p={r['p_value']:.4g}")
    ax.set(xlabel=f"delta {metric} (A - B)", ylabel="count")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
    ax.legend(fontsize=7)
    return to_png(fig)
