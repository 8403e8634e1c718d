"""What the simulated galaxies tell of their redshift beyond the catalogue colours: a ceiling for image-based photo-z.

Draws the true catalogue of a simulated survey (``pipeline.sim.catalog.draw_catalog``, no images rendered), keeps
the galaxies of the spec-z selection (reference band < ``--mag-max``), and fits a gradient-boosted regression of z
on feature sets, five folds: the observed r magnitude and colours (what the colour reference sees), the same plus the
true morphology the pixels hold (bulge-to-total ratio, half-light size, disk axis ratio), and noiseless colours. If
the morphology rows sit far below the colour row, the images carry redshift information that a CNN can learn beyond
the colours, and a CNN that does not beat the colour reference is short of training, not of information.
Printed: one Markdown row per feature set (sigma_MAD of dz / (1 + z), outlier fraction |dz| / (1 + z) > 0.05).

Usage: python bench/bench_sim_information.py [--preset sdss] [--n-sources 40000] [--mag-range 14 18.3]
           [--mag-max 17.8] [--seed 0]      (the defaults: the demo's and the science benchmark's survey)
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold

from pipeline.core.metrics import sigma_mad
from pipeline.sim.catalog import draw_catalog
from pipeline.sim.mosaic import max_radius_arcsec
from pipeline.sim.noise import band_noise
from pipeline.sim.presets import get_preset


def _scores(x: np.ndarray, z: np.ndarray, seed: int) -> tuple[float, float]:
    pred = np.empty_like(z)
    for train, test in KFold(5, shuffle=True, random_state=seed).split(x):
        model = HistGradientBoostingRegressor(max_iter=300, random_state=seed).fit(x[train], z[train])
        pred[test] = model.predict(x[test])
    dz = (pred - z) / (1 + z)
    return sigma_mad(dz), float(np.mean(np.abs(dz) > 0.05))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sdss")
    parser.add_argument("--n-sources", type=int, default=40000)
    parser.add_argument("--mag-range", type=float, nargs=2, default=[14.0, 18.3], help="galaxies drawn")
    parser.add_argument("--mag-max", type=float, default=17.8, help="spec-z selection in the reference band")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    preset = dataclasses.replace(get_preset(args.preset), gal_mag_range=tuple(args.mag_range))
    # the simulator's size cap: the largest galaxy fits the largest stamp in every band
    r_cap = min(max_radius_arcsec(band_noise(preset, b).fwhm_px, preset.scale(b)) for b in preset.bands)
    cat = draw_catalog(preset, args.n_sources, preset.star_fraction, np.random.default_rng(args.seed), r_cap)
    ref = f"mag_{preset.ref_band}"
    gal = cat[~cat.is_star & (cat[ref] < args.mag_max)]
    bands = list(preset.bands)
    mags = gal[[f"mag_{b}" for b in bands]].to_numpy()
    true = gal[[f"mag_true_{b}" for b in bands]].to_numpy()
    colours = np.c_[gal[ref], -np.diff(mags, axis=1)]
    bt, q = gal.bulge_to_total.to_numpy(), gal.q_disk.to_numpy()
    size = np.log10(bt * gal.r_bulge_arcsec + (1 - bt) * gal.r_disk_arcsec).to_numpy()
    rows = {
        f"observed {preset.ref_band} + colours (the colour reference's inputs)": colours,
        "+ log half-light size": np.c_[colours, size],
        "+ bulge-to-total ratio": np.c_[colours, bt],
        "+ size, bulge-to-total, disk axis ratio": np.c_[colours, size, bt, q],
        "noiseless colours": np.c_[gal[f"mag_true_{preset.ref_band}"], -np.diff(true, axis=1)],
    }
    z = gal.z_true.to_numpy()
    print(f"{args.preset}: {len(gal)} galaxies with {ref} < {args.mag_max} of {args.n_sources} sources, 5 folds")
    print("| features | sigma_MAD | outliers |\n|---|---|---|")
    for label, x in rows.items():
        smad, eta = _scores(np.where(np.isfinite(x), x, np.nan), z, args.seed)
        print(f"| {label} | {smad * 1e3:.2f}e-3 | {eta * 100:.2f} % |")


if __name__ == "__main__":
    main()
