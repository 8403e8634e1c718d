"""A self-contained HTML report of the models' metrics, comparisons and figures (figures embedded as PNG).

Model names are the file stems of the predictions, metrics and modality-dropout files; comparison JSONs carry
their own ``baseline``/``candidate`` names. The experiment figures (gain chart, modality dropout) are drawn by
:mod:`pipeline.report.experiments`; ``photoz report`` (:mod:`pipeline.steps.report`) writes the page.
"""

from __future__ import annotations

import logging
import math
import platform
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import pipeline
from pipeline.core.config import schema_default
from pipeline.report import experiments as exp
from pipeline.report import figures as figs
from pipeline.report import protocol
from pipeline.store.dropouts import NONE

logger = logging.getLogger(__name__)

_CSS = """body{font-family:sans-serif;max-width:1200px;margin:1em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}.sig{background:#cfc}pre{background:#f6f6f6;padding:0.5em}
img{max-width:100%}"""


def stem(path) -> str:
    name = Path(path).name
    for suffix in (".parquet", ".json"):
        name = name.removesuffix(suffix)
    return name


def _fmt(x, scale=1.0, digits=2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x * scale:.{digits}f}"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{b64}">'


def _summary_table(metrics: dict[str, dict]) -> str:
    head = (
        "<tr><th class=l>model</th><th>&sigma;<sub>MAD</sub> [10<sup>-3</sup>]</th><th>&eta; [%]</th>"
        "<th>&lt;&Delta;z&gt; [10<sup>-3</sup>]</th><th>n</th><th>outlier threshold</th><th>CRPS</th>"
        "<th>68% coverage</th><th>PIT KS</th></tr>"
    )
    rows = []
    for name, m in metrics.items():
        pdf = m.get("pdf", {})
        rows.append(
            f"<tr><td class=l>{escape(name)}</td><td>{_fmt(m['sigma_mad'], 1e3)}</td>"
            f"<td>{_fmt(m['outlier_fraction'], 100)}</td><td>{_fmt(m['bias'], 1e3)}</td><td>{m['n']}</td>"
            f"<td>{_fmt(m.get('outlier_threshold'), 1, 3)}</td><td>{_fmt(pdf.get('crps_mean'), 1, 5)}</td>"
            f"<td>{_fmt(pdf.get('coverage_68'), 100, 1)}</td><td>{_fmt(pdf.get('ks', {}).get('statistic'), 1, 4)}"
            "</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _compare_table(comparisons: list[dict], alpha: float = 0.05) -> str:
    head = (
        "<tr><th class=l>baseline (A)</th><th class=l>candidate (B)</th><th class=l>metric</th><th>M<sub>A</sub></th>"
        "<th>M<sub>B</sub></th><th>&delta; = M<sub>A</sub> - M<sub>B</sub></th><th>G(M)</th><th>p-value</th>"
        "<th>n shared</th><th>K</th></tr>"
    )
    scale = {"sigma_mad": (1e3, "10^-3"), "outlier_fraction": (100, "%"), "abs_bias": (1e3, "10^-3")}
    rows = []
    for c in comparisons:
        for name, r in c["metrics"].items():
            s, unit = scale.get(name, (1.0, ""))
            cls = ' class="sig"' if r["p_value"] < alpha else ""
            gain = "-" if r.get("gain") is None else f"{100 * r['gain']:.2f}%"
            # A p-value of 0 only says that no resample reached delta: it is below 1/K, not zero.
            p = f"&lt; {1 / c['n_boot']:.1g}" if r["p_value"] == 0 else f"{r['p_value']:.4g}"
            rows.append(
                f"<tr><td class=l>{escape(str(c.get('baseline', 'A')))}</td>"
                f"<td class=l>{escape(str(c.get('candidate', 'B')))}</td><td class=l>{escape(name)} [{unit}]</td>"
                f"<td>{_fmt(r['value_a'], s, 3)}</td><td>{_fmt(r['value_b'], s, 3)}</td>"
                f"<td>{_fmt(r['delta'], s, 3)}</td><td>{gain}</td><td{cls}>{p}</td>"
                f"<td>{c['n_shared']}</td><td>{c['n_boot']}</td></tr>"
            )
    return f"<table>{head}{''.join(rows)}</table>"


def _dropout_table(summary: pd.DataFrame) -> str:
    head = (
        "<tr><th>rank</th><th class=l>dropped modality</th><th>&sigma;<sub>MAD</sub> [10<sup>-3</sup>]</th>"
        "<th>change vs nothing dropped</th><th>&eta; [%]</th><th>&lt;&Delta;z&gt; [10<sup>-3</sup>]</th><th>n</th></tr>"
    )
    rows = []
    for r in summary.itertuples():
        change = "-" if r.dropped == NONE or not np.isfinite(r.change) else f"{100 * r.change:+.1f}%"
        rows.append(
            f"<tr><td>{r.rank or '-'}</td><td class=l>{escape(r.dropped)}</td><td>{_fmt(r.sigma_mad, 1e3)}</td>"
            f"<td>{change}</td><td>{_fmt(r.outlier_fraction, 100)}</td><td>{_fmt(r.bias, 1e3)}</td><td>{r.n}</td></tr>"
        )
    return f"<table class=dropout>{head}{''.join(rows)}</table>"


def _outlier_threshold(model: str, metrics: dict[str, dict], config_text: str | None) -> float:
    """The model's metrics threshold, else any metrics', else the config's evaluation.outlier_threshold, else the
    schema's default."""
    for m in ([metrics[model]] if model in metrics else []) + list(metrics.values()):
        if m.get("outlier_threshold") is not None:
            return float(m["outlier_threshold"])
    try:
        return float(yaml.safe_load(config_text or "")["evaluation"]["outlier_threshold"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        threshold = schema_default("evaluation.outlier_threshold")
        logger.warning("no outlier threshold in the metrics or the config: %g for %s", threshold, model)
        return threshold


def _dropout_section(dropout: dict[str, pd.DataFrame], metrics: dict[str, dict], config_text: str | None) -> list:
    parts = ["<h2>Modality dropout</h2>"]
    parts.append(
        "<p>Each model tested with one modality dropped at a time (paper Sec. 7.4, Fig. 10). Left: &sigma;<sub>MAD"
        "</sub> in 8 equal-count z<sub>spec</sub> bins (the bins of the rows with nothing dropped); 2-band modalities "
        "coloured, single-band ones grey; dash-dot: nothing dropped and the report's other models; grey histogram: "
        "z<sub>spec</sub>. Right: overall &sigma;<sub>MAD</sub> per dropped modality, ranked.</p>"
    )
    for model, df in dropout.items():
        threshold = _outlier_threshold(model, metrics, config_text)
        references = {n: m for n, m in metrics.items() if n != model}
        parts.append(f"<h3>{escape(model)}</h3>")
        summary = exp.dropout_summary(df, threshold)
        chart = exp.dropout_chart(model, df, threshold, references, summary=summary)
        parts.append(_img(chart, f"modality dropout {model}"))
        parts.append(_dropout_table(summary))
        parts.append(
            f"<p>Ranked by overall &sigma;<sub>MAD</sub>, worst (most useful modality) first; &eta;: |&Delta;z| "
            f"&ge; {threshold:g}; {df['object_id'].nunique()} objects.</p>"
        )
    return parts


def _versions() -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__, "pipeline": pipeline.__version__}
    try:
        import torch

        v["torch"] = torch.__version__
    except ImportError:
        v["torch"] = "not installed"
    return v


def render_report(
    predictions: dict[str, pd.DataFrame],
    metrics: dict[str, dict],
    comparisons: list[dict],
    config_text: str | None = None,
    mag_column: str | None = None,
    dropout: dict[str, pd.DataFrame] | None = None,
) -> str:
    """Build the report page.

    Parameters
    ----------
    predictions : dict
        Model name to predictions DataFrame (``z_spec``, ``z_phot``, optionally the magnitude column).
    metrics : dict
        Model name to metrics dict from :func:`pipeline.core.metrics.evaluate`.
    comparisons : list of dict
        Results of :func:`pipeline.core.bootstrap.paired_bootstrap` with ``baseline``/``candidate`` names.
    config_text : str, optional
        The configuration YAML, shown verbatim (escaped); its ``evaluation.compare`` entries give the order and the
        ``label`` of the pairs in the gain chart.
    mag_column : str, optional
        Magnitude column for the grey histogram; defaults to the one named in the metrics.
    dropout : dict, optional
        Model name to its modality-dropout predictions (long format: ``object_id``, ``z_spec``, ``fold``,
        ``dropped`` = "none" or a modality name, ``z_phot``).

    Returns
    -------
    str
        The HTML page; every text taken from the inputs is escaped.
    """
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Photo-z report</title><style>{_CSS}</style>"]
    parts.append("</head><body><h1>Photometric redshift report</h1>")
    parts.append("<h2>Metrics</h2>")
    if metrics:
        parts.append(_summary_table(metrics))
        parts.append(
            "<p>&Delta;z = (z<sub>phot</sub> - z<sub>spec</sub>)/(1 + z<sub>spec</sub>); &sigma;<sub>MAD</sub> = "
            "1.4826 median(|&Delta;z - median &Delta;z|); &eta;: |&Delta;z| &ge; threshold; bias: mean &Delta;z.</p>"
        )
        parts.append(protocol.protocol_paragraph(config_text, metrics))
        parts.append(protocol.losses_table(config_text, metrics))
    else:
        parts.append("<p>No metrics given.</p>")
    if comparisons:
        parts.append("<h2>Paired bootstrap comparisons</h2>")
        parts.append(_compare_table(comparisons))
        parts.append(
            "<p>G(M) = (|M<sub>A</sub>| - |M<sub>B</sub>|)/|M<sub>A</sub>|; p = fraction of resamples with "
            "(&delta;<sub>boot</sub> - &delta;) &ge; &delta; (paper eq. D.3); green: p &lt; 0.05.</p>"
        )
        parts.append("<h2>Gain of each candidate over its baseline</h2>")
        parts.append(_img(exp.gain_chart(exp.ordered_pairs(comparisons, config_text)), "gain chart"))
        parts.append(
            "<p>Bars: G(M) = (|M<sub>A</sub>| - |M<sub>B</sub>|)/|M<sub>A</sub>| in % for &sigma;<sub>MAD</sub> and "
            "&eta; (paper Figs. 6-8), positive when the candidate B is better; error bars: bootstrap standard "
            "deviation of &delta; divided by |M<sub>A</sub>|; solid with a star: p &lt; 0.05, hatched: not "
            "significant. Last panel: &sigma;<sub>MAD</sub> of A and B per pair. Pairs in the order of the config's "
            "evaluation.compare, named by its label, else &laquo;candidate vs baseline&raquo;.</p>"
        )
    first = next(iter(predictions.values()), None)
    if metrics:
        mag_column = mag_column or next((m["mag_column"] for m in metrics.values() if "mag_column" in m), None)
        values = {}
        if first is not None:
            values["z_spec"] = first["z_spec"].dropna().to_numpy()
            if mag_column and mag_column in first.columns:
                values["mag"] = first[mag_column].dropna().to_numpy()
        parts.append("<h2>&sigma;<sub>MAD</sub> against magnitude and redshift</h2>")
        parts.append("<p>Equal-count bins; error bars: standard deviation between folds; dashed: overall.</p>")
        parts.append(_img(figs.sigma_mad_binned(metrics, values), "sigma_MAD binned"))
    if dropout:
        parts += _dropout_section(dropout, metrics, config_text)
    if predictions:
        parts.append("<h2>z<sub>phot</sub> against z<sub>spec</sub></h2>")
        for name, df in predictions.items():
            ok = np.isfinite(df["z_spec"]) & np.isfinite(df["z_phot"])
            parts.append(_img(figs.density(df["z_spec"][ok].to_numpy(), df["z_phot"][ok].to_numpy(), name), name))
    pits = {n: m["pdf"]["pit_hist"] for n, m in metrics.items() if "pdf" in m}
    if pits:
        parts.append("<h2>PIT histograms</h2>")
        for name, h in pits.items():
            parts.append(_img(figs.pit_histogram(h, name), f"PIT {name}"))
    if comparisons:
        parts.append("<h2>Bootstrap distributions</h2>")
        for c in comparisons:
            title = f"{c.get('baseline', 'A')} (A) vs {c.get('candidate', 'B')} (B), K={c['n_boot']}"
            parts.append(f"<h3>{escape(title)}</h3>")
            for name, r in c["metrics"].items():
                parts.append(_img(figs.bootstrap_panel(name, r), f"bootstrap {name}"))
    parts.append("<h2>Configuration</h2>")
    parts.append(f"<pre>{escape(config_text)}</pre>" if config_text else "<p>No configuration given.</p>")
    parts.append("<h2>Software</h2><table>")
    parts += [f"<tr><td class=l>{escape(k)}</td><td class=l>{escape(v)}</td></tr>" for k, v in _versions().items()]
    parts.append("</table></body></html>")
    return "\n".join(parts)
