"""The paired bootstrap: significance, the null case, pairing, and fast == direct."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core import bootstrap, io
from pipeline.steps import compare


def _data(n, scale_b, seed=0):
    rng = np.random.default_rng(seed)
    zs = rng.uniform(0.0, 0.4, n)
    za = zs + 0.02 * (1 + zs) * rng.standard_t(4, n)
    zb = zs + scale_b * 0.02 * (1 + zs) * rng.standard_t(4, n)
    return zs, za, zb


def test_clearly_better_candidate_is_significant():
    zs, za, zb = _data(3000, 0.5)
    res = bootstrap.paired_bootstrap(zs, za, zb, n_boot=300, seed=1, outlier_threshold=0.05)
    m = res["metrics"]["sigma_mad"]
    assert m["delta"] > 0 and m["p_value"] < 0.01
    assert m["gain"] == pytest.approx((m["value_a"] - m["value_b"]) / m["value_a"])
    assert res["metrics"]["outlier_fraction"]["p_value"] < 0.01
    assert sum(m["hist"]["counts"]) == 300 and len(m["hist"]["edges"]) == 51


def test_identical_models_are_not_significant():
    zs, za, _ = _data(1000, 1.0)
    res = bootstrap.paired_bootstrap(zs, za, za, n_boot=200, seed=2, outlier_threshold=0.05)
    for r in res["metrics"].values():
        assert r["delta"] == 0.0 and r["p_value"] == 1.0  # every paired delta is exactly 0 >= 0


def test_resamples_are_paired():
    # Unpaired resampling would scatter the deltas of two nearly equal models; pairing keeps them tiny.
    zs, za, _ = _data(2000, 1.0)
    zb = za + 1e-6
    res = bootstrap.paired_bootstrap(zs, za, zb, n_boot=100, seed=3, outlier_threshold=0.05)
    assert res["metrics"]["sigma_mad"]["delta_boot_std"] < 1e-6  # unpaired: ~1e-4


@pytest.mark.parametrize("n", [2000, 2001])
def test_fast_equals_direct(n):
    zs, za, zb = _data(n, 0.97, seed=4)
    order = np.argsort(bootstrap.delta_z(za, zs), kind="stable")
    dz_a, dz_b = bootstrap.delta_z(za, zs)[order], bootstrap.delta_z(zb, zs)[order]
    fast = bootstrap._paired_bootstrap_fast(dz_a, dz_b, 300, 5, 0.05, workers=2)
    direct = bootstrap._paired_bootstrap_direct(dz_a, dz_b, 300, 5, 0.05)
    assert np.array_equal(bootstrap._paired_bootstrap_fast(dz_a, dz_b, 300, 5, 0.05, workers=1), fast)
    np.testing.assert_array_equal(fast[:, :2], direct[:, :2])  # medians and counts: bit for bit
    np.testing.assert_allclose(fast[:, 2], direct[:, 2], rtol=0, atol=1e-14)  # sums in another order
    pf = bootstrap.paired_bootstrap(zs, za, zb, 2000, 6, 0.05, method="fast")
    pd_ = bootstrap.paired_bootstrap(zs, za, zb, 2000, 6, 0.05, method="direct")
    for name in bootstrap.METRICS:
        assert pf["metrics"][name]["p_value"] == pd_["metrics"][name]["p_value"]


def test_fast_handles_multiplicities_above_255(monkeypatch):
    # The fast path gathers multiplicities as uint8; a draw repeating one object 300 times must not wrap.
    zs, za, zb = _data(1000, 0.9, seed=7)
    order = np.argsort(bootstrap.delta_z(za, zs), kind="stable")
    dz_a, dz_b = bootstrap.delta_z(za, zs)[order], bootstrap.delta_z(zb, zs)[order]
    plain = bootstrap._resample

    def heavy(seed, k, n):
        idx = plain(seed, k, n)
        idx[:300] = k % n  # object k drawn at least 300 times
        return idx

    monkeypatch.setattr(bootstrap, "_resample", heavy)
    fast = bootstrap._paired_bootstrap_fast(dz_a, dz_b, 20, 1, 0.05, workers=1)
    direct = bootstrap._paired_bootstrap_direct(dz_a, dz_b, 20, 1, 0.05)
    np.testing.assert_array_equal(fast[:, :2], direct[:, :2])


def test_compare_main_inner_join_and_errors(tmp_path):
    zs, za, zb = _data(400, 0.8)
    ids = np.arange(400)
    pd.DataFrame({"object_id": ids, "z_spec": zs, "z_phot": za}).to_parquet(tmp_path / "base.parquet")
    pd.DataFrame({"object_id": ids[50:], "z_spec": zs[50:], "z_phot": zb[50:]}).to_parquet(tmp_path / "mm.parquet")
    out = tmp_path / "c.json"
    argv = ["--baseline", str(tmp_path / "base.parquet"), "--candidate", str(tmp_path / "mm.parquet")]
    compare.main([*argv, "--n-boot", "50", "--seed", "0", "--outlier-threshold", "0.05", "--out", str(out)])
    c = io.read_json(out)
    assert c["n_shared"] == 350 and c["baseline"] == "base" and c["candidate"] == "mm" and c["seed"] == 0
    pd.DataFrame({"object_id": ids, "z_spec": zs + 0.1, "z_phot": zb}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="disagree on z_spec"):
        compare.main(["--baseline", str(tmp_path / "base.parquet"), "--candidate", str(tmp_path / "bad.parquet"),
                        "--seed", "0", "--out", str(out)])  # fmt: skip
    with pytest.raises(FileNotFoundError, match="candidate"):
        compare.main([argv[0], argv[1], "--candidate", str(tmp_path / "no.parquet"), "--seed", "0", "--out", "x"])
