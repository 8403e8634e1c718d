"""Figures and tables of the paper's experiments in the HTML report: the gain chart (paper Figs. 6-8) and the
modality-dropout chart (Fig. 10).

Figures come back as base64 PNG strings (see :mod:`pipeline.report.figures`); tables as DataFrames that
:mod:`pipeline.report.html` turns into HTML.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import yaml

from pipeline.core.metrics import binned_metrics, delta_z, equal_count_bins, point_metrics
from pipeline.report.figures import plt, to_png
from pipeline.store.dropouts import NONE

logger = logging.getLogger(__name__)

# the paper's Fig. 10 colours: nothing dropped dark red; the other models cyan (baseline), black, ...
_NONE_COLOUR = "darkred"
_REF_COLOURS = ("black", "tab:cyan", "navy", "magenta", "gold", "teal")
# the 2-band (or larger) modalities: tab10 without its grey (single-band modalities are grey) and cyan
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


# ---------------------------------------------------------------------------------------------------- gain chart
def compare_labels(config_text: str | None) -> list[tuple[str, str, str | None]]:
    """``(baseline, candidate, label or None)`` of the config's ``evaluation.compare`` entries, in order.

    Tolerates no config, a config that does not parse, and entries without ``label``.
    """
    if not config_text:
        return []
    try:
        cfg = yaml.safe_load(config_text)
        pairs = cfg["evaluation"]["compare"]
        return [(str(p["baseline"]), str(p["candidate"]), p.get("label")) for p in pairs]
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as err:
        logger.info("no evaluation.compare labels in the config (%s)", err)
        return []


def ordered_pairs(comparisons: list[dict], config_text: str | None = None) -> list[tuple[str, dict]]:
    """``(label, comparison)`` in the order of the config's ``evaluation.compare``; the others follow as given.

    The label is the entry's ``label`` when it has one, else ``"<candidate> vs <baseline>"``.
    """
    entries = compare_labels(config_text)
    rank = {(a, b): i for i, (a, b, _) in enumerate(entries)}
    labels = {(a, b): lab for a, b, lab in entries if lab}
    out = []
    for j, c in enumerate(comparisons):
        key = (str(c.get("baseline", "A")), str(c.get("candidate", "B")))
        out.append((rank.get(key, len(entries) + j), labels.get(key, f"{key[1]} vs {key[0]}"), c))
    return [(label, c) for _, label, c in sorted(out, key=lambda t: t[0])]


def gain_chart(pairs: list[tuple[str, dict]], alpha: float = 0.05) -> str:
    """Per comparison pair: G(sigma_MAD) and G(eta) in % with bootstrap errors, and sigma_MAD of A and B.

    ``pairs`` is :func:`ordered_pairs`' output. The error bar of G is ``delta_boot_std / |M_A|``; bars with
    ``p < alpha`` are solid and starred, the others hatched.
    """
    labels = [lab for lab, _ in pairs]
    x = np.arange(len(pairs))
    longest = max(map(len, labels), default=0)
    # side by side for a few short labels, else stacked on one shared x axis labelled at the bottom only
    stack = len(pairs) > 5 or longest > 24
    if stack:
        fig, axes = plt.subplots(3, 1, figsize=(max(9.0, 2.0 + 0.8 * len(pairs)), 9.5), sharex=True)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    panels = (("sigma_mad", r"G($\sigma_{MAD}$) [%]", "tab:blue"), ("outlier_fraction", r"G($\eta$) [%]", "tab:orange"))
    for ax, (metric, ylabel, colour) in zip(axes[:2], panels, strict=True):
        gains, errs, sig = [], [], []
        for _, c in pairs:
            r = c["metrics"].get(metric, {})
            a = abs(r.get("value_a") or 0.0)
            gains.append(100 * r["gain"] if r.get("gain") is not None else np.nan)
            std = r.get("delta_boot_std")
            errs.append(100 * std / a if std is not None and a > 0 else np.nan)
            sig.append(r.get("p_value", 1.0) < alpha)
        gains, errs = np.array(gains, dtype=float), np.array(errs, dtype=float)
        for i in x:
            ax.bar(i, gains[i], 0.6, color=colour if sig[i] else "white", edgecolor=colour,
                   hatch=None if sig[i] else "//", lw=1.2)  # fmt: skip
        ax.errorbar(x, gains, yerr=errs, fmt="none", ecolor="k", capsize=4, lw=1)
        finite = np.isfinite(gains).any()
        top = (np.nanmax(np.abs(gains) + np.nan_to_num(errs)) if finite else 0.0) or 1.0
        for i in x:
            if sig[i] and np.isfinite(gains[i]):
                y = gains[i] + np.sign(gains[i] or 1) * (np.nan_to_num(errs[i]) + 0.06 * top)
                ax.text(i, y, "*", ha="center", va="center", fontsize=16, fontweight="bold")
        for i in np.flatnonzero(~np.isfinite(gains)):  # M_A = 0: no relative gain
            ax.text(i, 0.05 * top, "n/a", ha="center", va="bottom", fontsize=9, color="0.4")
        ax.axhline(0, color="k", lw=0.8)
        negative = finite and np.nanmin(gains - np.nan_to_num(errs)) < 0
        ax.set_ylim(-1.25 * top if negative else -0.1 * top, 1.25 * top)
        ax.set_ylabel(ylabel)
    a_vals = np.array([c["metrics"]["sigma_mad"]["value_a"] for _, c in pairs]) * 1e3
    b_vals = np.array([c["metrics"]["sigma_mad"]["value_b"] for _, c in pairs]) * 1e3
    for dx, vals, col, label in ((-0.2, a_vals, "tab:cyan", "baseline (A)"), (0.2, b_vals, "0.25", "candidate (B)")):
        axes[2].bar(x + dx, vals, 0.4, color=col, label=label)
        for xi, v in zip(x + dx, vals, strict=True) if len(pairs) <= 6 else ():  # values: while they fit
            axes[2].text(xi, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    axes[2].set_ylim(0, 1.22 * max(a_vals.max(), b_vals.max()))
    axes[2].set_ylabel(r"$\sigma_{MAD}$ [$10^{-3}$]")
    axes[2].legend(fontsize=9, loc="upper center", ncol=2, framealpha=0.9)
    titles = ("gain in $\\sigma_{MAD}$", "gain in outlier fraction $\\eta$", "$\\sigma_{MAD}$ of A and B")
    rotate = longest * len(labels) > (80 if stack else 40)
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xticks(x, labels, rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=10)
        ax.set_title(title, fontsize=11)
        ax.set_xlim(-0.6, len(pairs) - 0.4)
    fig.tight_layout()
    return to_png(fig)


# -------------------------------------------------------------------------------------------- modality dropout
def _is_single_band(name: str) -> bool:
    return "_" not in name


def dropout_summary(df: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Overall metrics per dropped modality: ``none`` first (when present), then ranked by sigma_MAD, worst first.

    Columns: ``dropped``, ``sigma_mad``, ``outlier_fraction``, ``bias``, ``n``, ``rank`` (0 for ``none``) and
    ``change`` (sigma_MAD relative to nothing dropped; NaN without ``none`` rows).
    """
    rows = []
    for name, g in df.groupby("dropped", sort=False):
        rows.append({"dropped": name, **point_metrics(delta_z(g["z_phot"], g["z_spec"]), threshold)})
    table = pd.DataFrame(rows)
    is_none = table["dropped"] == NONE
    ranked = table[~is_none].sort_values("sigma_mad", ascending=False, kind="stable")
    ranked = ranked.assign(rank=np.arange(1, len(ranked) + 1))
    table = pd.concat([table[is_none].assign(rank=0), ranked], ignore_index=True)
    ref = table.loc[table["dropped"] == NONE, "sigma_mad"]
    return table.assign(change=table["sigma_mad"] / (float(ref.iloc[0]) if len(ref) else np.nan) - 1)


def _reference_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per object from the predictions with nothing dropped (any variant's when there are none)."""
    ref = df[df["dropped"] == NONE]
    return (df if ref.empty else ref).drop_duplicates("object_id")


def dropout_binned(df: pd.DataFrame, threshold: float, n_bins: int = 8) -> dict[str, pd.DataFrame]:
    """sigma_MAD per equal-count z_spec bin for each dropped modality (and ``none``).

    The bins are those of the ``none`` rows (all rows' objects when there are none), given to the other rows by
    ``object_id``, so every modality is measured on the same objects in each bin. Each table holds the rows of
    :func:`pipeline.core.metrics.binned_metrics`: ``centre`` (median z_spec of the bin), ``sigma_mad``,
    ``sigma_mad_fold_std`` (ddof=1 between folds), ``n``, ...
    """
    ref = _reference_rows(df)
    bin_of = pd.Series(equal_count_bins(ref["z_spec"].to_numpy(float), n_bins), index=ref["object_id"].to_numpy())
    out = {}
    for name, g in df.groupby("dropped", sort=False):
        ids = bin_of.reindex(g["object_id"].to_numpy()).to_numpy()
        dz = delta_z(g["z_phot"], g["z_spec"])
        out[name] = pd.DataFrame(binned_metrics(g["z_spec"], dz, g["fold"].to_numpy(), threshold, n_bins, ids=ids))
    return out


def dropout_chart(
    model: str,
    df: pd.DataFrame,
    threshold: float,
    references: dict[str, dict],
    n_bins: int = 8,
    summary: pd.DataFrame | None = None,
) -> str:
    """Paper Fig. 10: sigma_MAD against z_spec with one modality dropped at a time, and the ranked overall values.

    ``references`` maps the report's other models to their metrics JSON (binned ``z_spec`` rows and overall
    ``sigma_mad``), drawn dash-dotted like the model with nothing dropped. ``summary`` is
    :func:`dropout_summary`'s table when the caller has it already.
    """
    summary = dropout_summary(df, threshold) if summary is None else summary
    binned = dropout_binned(df, threshold, n_bins)
    ranked = summary[summary["dropped"] != NONE]
    names = ranked["dropped"].tolist()
    multi = [n for n in names if not _is_single_band(n)]
    palette = _PALETTE if len(multi) <= len(_PALETTE) else [plt.get_cmap("tab20")(i) for i in range(20)]
    colour = {n: ("0.65" if _is_single_band(n) else palette[multi.index(n) % len(palette)]) for n in names}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.9, 1]})

    # left: sigma_MAD per z_spec bin, the z_spec histogram behind
    has_none = NONE in binned
    ref_rows = _reference_rows(df)
    twin = ax.twinx()
    twin.hist(ref_rows["z_spec"], bins=60, color="0.9")
    twin.set_yticks([])
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    zs = ref_rows["z_spec"].to_numpy(float)
    centres = binned[names[0]]["centre"].to_numpy() if names else np.array([zs.min(), zs.max()])
    gap = np.diff(centres).min() if len(centres) > 1 else 0.1
    shift = 0.4 * gap / max(len(names), 1)  # lines slightly apart, as in the paper, within 40% of the closest bins
    n_single = sum(map(_is_single_band, names))
    single_labelled = False
    for i, name in enumerate(names):  # worst first: the legend reads in the ranked order
        t = binned[name]
        single = _is_single_band(name)
        label = name
        if single:
            label = "_nolegend_" if single_labelled else f"single band ({n_single})"
            single_labelled = True
        ax.plot(t["centre"] + (i - len(names) / 2) * shift, t["sigma_mad"] * 1e3, marker="." if single else "o",
                ms=4 if single else 5, lw=0.8 if single else 1.6, color=colour[name], label=label,
                zorder=2 if single else 3)  # fmt: skip
    refs = []
    if has_none:
        refs.append((f"{model}, nothing dropped", binned[NONE]["centre"], binned[NONE]["sigma_mad"], _NONE_COLOUR))
    ref_colour = {name: _REF_COLOURS[j % len(_REF_COLOURS)] for j, name in enumerate(references)}
    for name, m in references.items():
        rows = m.get("binned", {}).get("z_spec") or []
        if rows:
            refs.append((name, [r["centre"] for r in rows], [r["sigma_mad"] for r in rows], ref_colour[name]))
    for label, c, s, col in refs:
        ax.plot(c, np.asarray(s, dtype=float) * 1e3, ls="-.", lw=2, color=col, label=label, zorder=4)
    ax.set_xlim(min(0.0, zs.min()), max(np.quantile(zs, 0.995), centres.max() + gap))
    ax.set(xlabel="z_spec", ylabel=r"$\sigma_{MAD}$ [$10^{-3}$]")
    ax.set_title(f"{model}: one modality dropped at a time", fontsize=11)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0,
              title="dropped (ranked)", title_fontsize=8)  # fmt: skip

    # right: overall sigma_MAD per dropped modality, ranked, bars drawn from the value with nothing dropped
    none_val = float(summary.loc[summary["dropped"] == NONE, "sigma_mad"].iloc[0]) * 1e3 if has_none else np.nan
    base = none_val if has_none else 0.0
    vals = ranked["sigma_mad"].to_numpy() * 1e3
    y = np.arange(len(names))[::-1]
    bx.barh(y, vals - base, left=base, color=[colour[n] for n in names], height=0.7)
    bx.set_yticks(y, names, fontsize=9)
    lines = ([("nothing dropped", none_val, _NONE_COLOUR)] if has_none else []) + [
        (name, m["sigma_mad"] * 1e3, ref_colour[name]) for name, m in references.items()
    ]
    for label, v, col in lines:
        bx.axvline(v, color=col, ls="-.", lw=1.6, label=label)
    all_vals = list(vals) + [v for _, v, _ in lines]
    lo, hi = min(all_vals), max(all_vals)
    pad = 0.1 * ((hi - lo) or hi or 1.0)
    bx.set_xlim(lo - pad if has_none else 0.0, hi + pad)
    bx.set_ylim(-0.6, len(names) - 0.4)
    bx.set_xlabel(r"overall $\sigma_{MAD}$ [$10^{-3}$]")
    bx.set_title("overall, ranked (bars from nothing dropped)", fontsize=11)
    if lines:
        bx.legend(fontsize=8, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    return to_png(fig)
