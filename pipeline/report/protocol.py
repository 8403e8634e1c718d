"""What the report says of how the models were trained and evaluated: the training protocol (paper Sec. 3.4),
the evaluation cut, and the loss of each model with the estimate its metrics use (Appendix A, Table A.1)."""

from __future__ import annotations

from html import escape

import yaml

from pipeline.core.folds import validation_fraction


def _fmt(x, scale=1.0, digits=2) -> str:
    return "-" if x is None or x != x else f"{x * scale:.{digits}f}"


def protocol_paragraph(config_text: str | None, metrics: dict[str, dict]) -> str:
    """One paragraph: the folds and seeds, the validation split (only with early stopping), the evaluation cut."""
    try:
        cfg = yaml.safe_load(config_text or "") or {}
    except yaml.YAMLError:
        cfg = {}
    training, folds = cfg.get("training") or {}, (cfg.get("folds") or {}).get("n")
    test = (cfg.get("folds") or {}).get("test")
    parts = []
    if training:
        seeds = training.get("seeds") or []
        share = validation_fraction(training)
        which = f"test fold{'s' * (len(test) > 1)} {', '.join(map(str, test))}" if test else "every test fold"
        parts.append(
            f"Each model is trained for {which} with {len(seeds)} seed(s), and the PDFs of the seeds are averaged."
        )
        if share > 0:
            stop = training.get("early_stopping_patience")
            why = (
                f"early stopping after {stop} epochs without a better validation &sigma;<sub>MAD</sub>"
                if stop
                else "monitoring only"
            )
            parts.append(
                f"{100 * share:g} % of the training folds are held out as a validation set ({why}): the models train "
                f"on {100 * (1 - share):g} % of the {folds - 1 if folds else 'other'} training folds, not all of them "
                "as in the paper."
            )
        else:
            parts.append(
                f"Each test fold's models train on all {folds - 1 if folds else 'other'} other folds (the paper's "
                "protocol, Sec. 3.4); no validation set is held out."
            )
    if test:
        n = max((m.get("n", 0) for m in metrics.values()), default=0)
        parts.append(
            f"Only fold(s) {', '.join(map(str, test))} of {folds} are test folds here: the predictions, metrics and "
            f"comparisons cover their {n} objects, not the whole sample."
        )
    cuts = {m.get("mag_max") for m in metrics.values()} - {None}
    if cuts:
        column = next((m.get("mag_column") for m in metrics.values() if m.get("mag_column")), "magnitude")
        n_cut = max(m.get("n_cut", 0) for m in metrics.values())
        parts.append(
            f"Metrics and comparisons use the objects with {escape(str(column))} &le; {min(cuts):g} only "
            f"({n_cut} fainter objects, trained on, are left out)."
        )
    return f"<p>{' '.join(parts)}</p>" if parts else ""


def losses_table(config_text: str | None, metrics: dict[str, dict]) -> str:
    """Table A.1: each model's loss and what its z_phot is, with its metrics; empty when every model has the same
    loss (then the table tells nothing)."""
    try:
        models = (yaml.safe_load(config_text or "") or {}).get("models") or {}
    except yaml.YAMLError:
        return ""
    losses = {name: spec.get("loss") for name, spec in models.items() if name in metrics and spec.get("loss")}
    if len({yaml.safe_dump(v, sort_keys=True) for v in losses.values()}) < 2:
        return ""
    head = (
        "<tr><th class=l>model</th><th class=l>loss</th><th class=l>z<sub>phot</sub></th>"
        "<th>&sigma;<sub>MAD</sub> [10<sup>-3</sup>]</th><th>&eta; [%]</th>"
        "<th>&lt;&Delta;z&gt; [10<sup>-3</sup>]</th></tr>"
    )
    rows = []
    for name, loss in losses.items():
        terms = []
        if loss.get("classification"):
            terms.append(f"{loss['classification']:g} &times; cross-entropy")
        if loss.get("regression"):
            terms.append(f"{loss['regression']:g} &times; {escape(str(loss.get('regression_kind', 'mae')).upper())}")
        m = metrics[name]
        estimate = "z<sub>reg</sub> (regression)" if m.get("estimate") == "z_reg" else "median of the PDF"
        rows.append(
            f"<tr><td class=l>{escape(name)}</td><td class=l>{' + '.join(terms)}</td><td class=l>{estimate}</td>"
            f"<td>{_fmt(m['sigma_mad'], 1e3)}</td><td>{_fmt(m['outlier_fraction'], 100)}</td>"
            f"<td>{_fmt(m['bias'], 1e3)}</td></tr>"
        )
    return (
        "<h2>Losses (paper Appendix A, Table A.1)</h2>"
        f"<table>{head}{''.join(rows)}</table>"
        "<p>A model trained without the classification term has no trained PDF: its z<sub>phot</sub> is the "
        "regression output, and its comparisons use it.</p>"
    )
