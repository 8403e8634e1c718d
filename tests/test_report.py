"""The HTML report renders for one and two models, embeds its figures and escapes its text."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core import bootstrap, io, metrics
from pipeline.steps import report


def _model(tmp_path, name, scale, seed=0, n=600):
    rng = np.random.default_rng(seed)
    zs = rng.uniform(0.02, 0.38, n)
    zp = zs + scale * (1 + zs) * rng.standard_t(4, n)
    pred = pd.DataFrame(
        {
            "object_id": np.arange(n),
            "z_spec": zs,
            "z_phot": zp,
            "fold": np.arange(n) % 5,
            "mag_r": rng.uniform(14, 18, n),
        }
    )
    edges = np.linspace(0, 0.4, 81)
    centres = 0.5 * (edges[1:] + edges[:-1])
    pdf = np.exp(-0.5 * ((centres[None, :] - zp[:, None]) / (scale * 1.2)) ** 2) + 1e-12
    pdf /= pdf.sum(axis=1, keepdims=True)
    io.write_parquet(pred, tmp_path / f"{name}.parquet")
    m = metrics.evaluate(pred, pdf, edges, 0.05, "mag_r")
    io.write_json(m, tmp_path / f"{name}.json")
    return pred


def _compare(tmp_path, a, b):
    c = bootstrap.paired_bootstrap(a["z_spec"], a["z_phot"], b["z_phot"], 200, 0, 0.05)
    c.update(baseline="base<line>", candidate="multimodal")
    io.write_json(c, tmp_path / "cmp.json")


def test_report_one_model(tmp_path):
    _model(tmp_path, "baseline", 0.01)
    out = tmp_path / "report" / "index.html"
    report.main(["--predictions", str(tmp_path / "baseline.parquet"), "--metrics", str(tmp_path / "baseline.json"),
                 "--out", str(out)])  # fmt: skip
    html = out.read_text()
    assert "<table>" in html and "baseline" in html and 'src="data:image/png;base64,' in html
    assert "PIT histograms" in html and "No configuration given" in html


def test_report_two_models_with_comparison_and_config(tmp_path):
    a = _model(tmp_path, "baseline", 0.01)
    b = _model(tmp_path, "multimodal", 0.008, seed=0)
    _compare(tmp_path, a, b)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("results: results  # <script>alert(1)</script>\n")
    out = tmp_path / "index.html"
    report.main([
        "--predictions", str(tmp_path / "baseline.parquet"), str(tmp_path / "multimodal.parquet"),
        "--metrics", str(tmp_path / "baseline.json"), str(tmp_path / "multimodal.json"),
        "--compare", str(tmp_path / "cmp.json"), "--config", str(cfg), "--out", str(out),
    ])  # fmt: skip
    html = out.read_text()
    m = io.read_json(tmp_path / "baseline.json")
    assert f"{m['sigma_mad'] * 1e3:.2f}" in html and f"{m['outlier_fraction'] * 100:.2f}" in html
    assert "multimodal" in html and "p-value" in html and "Bootstrap distributions" in html
    # sigma_MAD binned, gain chart, 2 densities, 2 PIT, 3 bootstrap panels
    assert html.count('src="data:image/png;base64,') == 1 + 1 + 2 + 2 + 3
    assert "<script>" not in html and "&lt;script&gt;" in html and "base&lt;line&gt;" in html
    assert "numpy" in html and "python" in html


def test_report_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="report input not found"):
        report.main(["--metrics", str(tmp_path / "none.json"), "--out", str(tmp_path / "x.html")])
    assert not (tmp_path / "x.html").exists()


def test_protocol_names_the_test_folds():
    """The paragraph says which folds were trained and tested, not "every fold", when the config tests only some."""
    from pipeline.report.protocol import protocol_paragraph

    some = "training: {seeds: [0, 1]}\nfolds: {n: 5, test: [0, 3]}\n"
    text = protocol_paragraph(some, {"baseline": {"n": 700}})
    assert "trained for test folds 0, 3 with 2 seed(s)" in text and "every" not in text
    assert "Only fold(s) 0, 3 of 5 are test folds here" in text and "their 700 objects" in text
    text = protocol_paragraph("training: {seeds: [0]}\nfolds: {n: 5, test: null}\n", {"baseline": {"n": 1800}})
    assert "trained for every test fold with 1 seed(s)" in text and "Only fold" not in text
