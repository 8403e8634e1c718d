"""The report's experiment figures: the gain chart of the comparisons (paper Figs. 6-8), with the pairs in the
config's order and under its labels, and the modality-dropout section (Fig. 10) ranked by sigma_MAD."""

import re

import numpy as np
import pandas as pd
import pytest

from pipeline.core import bootstrap, io, metrics
from pipeline.report import experiments as exp
from pipeline.steps import report

N = 1600


def _truth(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 1.5, N), np.arange(N) % 5


def _comparison(z_spec, scale_a, scale_b, baseline, candidate, seed):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(N)  # shared noise: the pair differs by its scale only
    za = z_spec + scale_a * (1 + z_spec) * noise
    zb = z_spec + scale_b * (1 + z_spec) * noise
    c = bootstrap.paired_bootstrap(z_spec, za, zb, 100, 0, 0.05)
    c.update(baseline=baseline, candidate=candidate)
    return c


def _metrics_json(tmp_path, name, z_spec, folds, scale, threshold=0.05):
    zp = z_spec + scale * (1 + z_spec) * np.random.default_rng(7).standard_normal(N)
    pred = pd.DataFrame({"object_id": np.arange(N), "z_spec": z_spec, "z_phot": zp, "fold": folds})
    m = metrics.evaluate(pred, None, None, threshold, None)
    io.write_json(m, tmp_path / f"{name}.json")
    return m


# the extra noise (in units of (1 + z)) that dropping each modality adds: u_g hurts most, then g_r, k, r
DROP_NOISE = {"none": 0.0, "r": 0.001, "u_g": 0.03, "k": 0.004, "g_r": 0.015}


def _dropout_frame(z_spec, folds, seed=1):
    rng = np.random.default_rng(seed)
    base = 0.01 * (1 + z_spec) * rng.standard_normal(N)
    rows = []
    for name, extra in DROP_NOISE.items():
        zp = z_spec + base + extra * (1 + z_spec) * rng.standard_normal(N)
        rows.append(pd.DataFrame({"object_id": np.arange(N, dtype=np.int64), "z_spec": z_spec, "fold": folds,
                                  "dropped": name, "z_phot": zp}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


CONFIG = """evaluation:
  outlier_threshold: 0.05
  compare:
    - {baseline: base10, candidate: mm10, label: "10-layer <CNN>"}
    - {baseline: base5, candidate: mm5}
"""


def test_ordered_pairs_follow_the_config_and_its_labels():
    z, _ = _truth()
    c5 = _comparison(z, 0.02, 0.018, "base5", "mm5", 1)
    c10 = _comparison(z, 0.02, 0.016, "base10", "mm10", 2)
    extra = _comparison(z, 0.02, 0.019, "a", "b", 3)
    pairs = exp.ordered_pairs([extra, c5, c10], CONFIG)
    assert [lab for lab, _ in pairs] == ["10-layer <CNN>", "mm5 vs base5", "b vs a"]
    assert [c["candidate"] for _, c in pairs] == ["mm10", "mm5", "b"]
    # no config, or one without compare entries, or one that does not parse: default labels, the given order
    for text in (None, "", "results: results\n", "evaluation: 3\n", "a: [unclosed\n"):
        assert [lab for lab, _ in exp.ordered_pairs([c5, c10], text)] == ["mm5 vs base5", "mm10 vs base10"]


def test_gain_chart_in_page_with_labels(tmp_path, monkeypatch):
    z, _ = _truth()
    for i, (a, b, sb) in enumerate((("base5", "mm5", 0.019), ("base10", "mm10", 0.016))):
        io.write_json(_comparison(z, 0.02, sb, a, b, i), tmp_path / f"cmp{i}.json")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    seen = []
    original = exp.gain_chart
    monkeypatch.setattr(exp, "gain_chart", lambda pairs, **kw: seen.append(pairs) or original(pairs, **kw))
    out = tmp_path / "index.html"
    report.main(["--compare", str(tmp_path / "cmp0.json"), str(tmp_path / "cmp1.json"), "--config", str(cfg),
                 "--out", str(out)])  # fmt: skip
    html = out.read_text()
    assert "Gain of each candidate over its baseline" in html and 'alt="gain chart"' in html
    assert [lab for lab, _ in seen[0]] == ["10-layer <CNN>", "mm5 vs base5"]
    gain = seen[0][0][1]["metrics"]["sigma_mad"]["gain"]
    assert gain == pytest.approx(0.2, abs=1e-9)  # shared noise: sigma_MAD scales with the noise amplitude
    assert "10-layer &lt;CNN&gt;" in html  # the config, shown escaped


def test_gain_chart_without_config_and_with_a_zero_baseline_metric():
    z, _ = _truth()
    c = _comparison(z, 0.001, 0.0009, "a", "b", 0)
    assert c["metrics"]["outlier_fraction"]["gain"] is None  # no outliers in A: no relative gain
    assert len(exp.gain_chart(exp.ordered_pairs([c]))) > 1000


def test_dropout_binned_uses_the_bins_of_nothing_dropped():
    z, folds = _truth()
    df = _dropout_frame(z, folds)
    binned = exp.dropout_binned(df.sample(frac=1, random_state=0), 0.05)
    assert set(binned) == set(DROP_NOISE)
    for t in binned.values():
        assert t["n"].tolist() == [N // 8] * 8
        np.testing.assert_allclose(t["centre"], binned["none"]["centre"])
    assert np.isfinite(binned["u_g"]["sigma_mad_fold_std"]).all()
    assert (binned["u_g"]["sigma_mad"] > binned["none"]["sigma_mad"]).all()


def test_dropout_section_ranked_by_sigma_mad(tmp_path):
    z, folds = _truth()
    _metrics_json(tmp_path, "baseline", z, folds, 0.02, threshold=0.04)
    _metrics_json(tmp_path, "mm_dropout", z, folds, 0.01, threshold=0.04)
    path = tmp_path / "drop" / "mm_dropout.parquet"
    path.parent.mkdir()
    df = _dropout_frame(z, folds)
    df.to_parquet(path)
    out = tmp_path / "index.html"
    report.main(["--metrics", str(tmp_path / "baseline.json"), str(tmp_path / "mm_dropout.json"),
                 "--dropout", str(path), "--out", str(out)])  # fmt: skip
    html = out.read_text()
    assert "<h2>Modality dropout</h2>" in html and 'alt="modality dropout mm_dropout"' in html
    table = html[html.index("<table class=dropout>") :]
    table = table[: table.index("</table>")]
    names = re.findall(r"<td>([-\d]+)</td><td class=l>([^<]+)</td>", table)
    assert names == [("-", "none"), ("1", "u_g"), ("2", "g_r"), ("3", "k"), ("4", "r")]
    # eta with the metrics' threshold (0.04), not the config's or a default
    summary = exp.dropout_summary(df, 0.04).set_index("dropped")
    dz = metrics.delta_z(df.loc[df["dropped"] == "u_g", "z_phot"], df.loc[df["dropped"] == "u_g", "z_spec"])
    assert summary.loc["u_g", "outlier_fraction"] == pytest.approx(np.mean(np.abs(dz) >= 0.04))
    assert f"{summary.loc['u_g', 'outlier_fraction'] * 100:.2f}" in table and "&ge; 0.04;" in html
    assert summary.loc["u_g", "change"] > summary.loc["g_r", "change"] > 0


def test_dropout_missing_or_malformed_file(tmp_path):
    missing = tmp_path / "nowhere" / "mm.parquet"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        report.main(["--dropout", str(missing), "--out", str(tmp_path / "x.html")])
    z, folds = _truth()
    bad = tmp_path / "bad.parquet"
    _dropout_frame(z, folds).drop(columns="dropped").to_parquet(bad)
    with pytest.raises(ValueError, match=r"bad\.parquet.*dropped"):
        report.main(["--dropout", str(bad), "--out", str(tmp_path / "x.html")])
    assert not (tmp_path / "x.html").exists()
