"""Pictures of the simulated survey: a few galaxies in every band, and the colour-redshift tracks of the sample.

    python bench/sim_gallery.py [--hsc DIR] [--sdss DIR] [--out-dir /tmp]

makes ``sim_gallery.png`` (galaxies of an HSC-like survey, all ten bands u..Ks, each cut from the band's own tiles
through the tile's WCS, SIP included, over the same 8" on the sky, so the coarser near-infrared pixels show) and
``sim_colour_tracks.png`` (observed colours against true redshift, coloured by type, with the templates' tracks).
Surveys that do not exist yet are simulated first (HSC 2000 sources, the SDSS demo 3500).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from pipeline.sim.presets import get_preset  # noqa: E402
from pipeline.sim.sed import ColourGrid, bulge_to_total  # noqa: E402
from pipeline.sim.survey import colour_grid, simulate_survey  # noqa: E402

BOX_ARCSEC = 8.0


def _ensure(path: Path, cfg: dict) -> Path:
    if not (path / "survey.json").exists():
        t0 = time.monotonic()
        simulate_survey(cfg, path)
        print(f"simulated {cfg['preset']} ({cfg['n_sources']} sources) in {time.monotonic() - t0:.1f} s -> {path}")
    return path


@functools.cache
def _band_tiles(survey: Path, band: str) -> list:
    """(header, image, WCS) of every tile of a band, read once."""
    tiles = []
    for path in sorted((survey / "mosaics" / band).glob("tile-*.fits")):
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data.astype(float)
        tiles.append((header, data, WCS(header)))
    return tiles


def _cutout(survey: Path, band: str, ra: float, dec: float):
    """(image, extent in arcsec) of the box around (ra, dec) from the first tile holding it, or None."""
    half = BOX_ARCSEC / 2
    for header, data, wcs in _band_tiles(survey, band):
        x, y = wcs.all_world2pix(ra, dec, 0)
        r = int(np.ceil(half / header["PIXSCALE"])) + 1
        ix, iy = int(np.round(x)), int(np.round(y))
        if r <= ix < data.shape[1] - r and r <= iy < data.shape[0] - r:
            img = data[iy - r : iy + r + 1, ix - r : ix + r + 1]
            s = header["PIXSCALE"]
            # Pixel edges relative to the source, arcsec.
            ext = [(ix - r - 0.5 - x) * s, (ix + r + 0.5 - x) * s, (iy - r - 0.5 - y) * s, (iy + r + 0.5 - y) * s]
            return img, ext
    return None


def gallery(survey: Path, out: Path, n_gal: int = 5) -> None:
    df = pd.read_parquet(survey / "sources.parquet")
    bands = list(get_preset("hsc").bands)
    ok = (~df["is_star"]) & df["mag_Ks"].notna() & df["mag_true_i"].between(19.5, 22.5) & ~df["in_pair"]
    pick = df[ok].sort_values("z_true")
    pick = pick.iloc[np.linspace(0, len(pick) - 1, n_gal).round().astype(int)]
    fig, axes = plt.subplots(n_gal, len(bands), figsize=(1.6 * len(bands), 1.75 * n_gal))
    for row, (_, src) in enumerate(pick.iterrows()):
        for col, band in enumerate(bands):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            got = _cutout(survey, band, src["ra"], src["dec"])
            if got is None:
                ax.text(0.5, 0.5, "no tile", ha="center", va="center", transform=ax.transAxes)
                continue
            img, ext = got
            sig = np.nanstd(img[img < np.nanpercentile(img, 60)]) if np.isfinite(img).any() else 1.0
            ax.imshow(np.arcsinh(img / (3 * sig)), origin="lower", cmap="gray_r", extent=ext, vmin=-1, vmax=5)
            ax.set_xlim(-BOX_ARCSEC / 2, BOX_ARCSEC / 2)  # pixel x runs west: east is left, as on the sky
            ax.set_ylim(-BOX_ARCSEC / 2, BOX_ARCSEC / 2)
            if row == 0:
                ax.set_title(band)
            if col == 0:
                ax.set_ylabel(f"z={src['z_true']:.2f}\nt={src['sed_type']:.1f} i={src['mag_true_i']:.1f}", fontsize=8)
    fig.suptitle(f'HSC-like simulated galaxies, {BOX_ARCSEC:.0f}" boxes, each band from its own tiles and WCS')
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"wrote {out}")


def _tracks(ax, grid: ColourGrid, ref: str, b1: str, b2: str, zmax: float):
    z = np.linspace(0.0, zmax, 200)
    k1, k2 = grid.bands.index(b1), grid.bands.index(b2)
    for t, colour in zip((0.0, 1.0, 2.0, 3.0), plt.cm.coolwarm(np.linspace(1, 0, 4)), strict=True):
        m = grid.galaxy_mags(np.full_like(z, t), z, bulge_to_total(np.full_like(z, t)), ref)
        ax.plot(z, m[:, k1] - m[:, k2], color=colour, lw=2, label=f"template t={t:.0f}")


@functools.cache
def _galaxies(survey: Path) -> tuple[pd.DataFrame, dict]:
    """The galaxies of a simulated survey and its extinction coefficients, read once."""
    df = pd.read_parquet(survey / "sources.parquet")
    coef = json.loads((survey / "survey.json").read_text())["extinction_r_coefficients"]
    return df[~df["is_star"]], coef


def colour_tracks(sdss: Path, hsc: Path, out: Path) -> None:
    panels = [(sdss, "sdss", "u", "g", 0.45), (sdss, "sdss", "g", "r", 0.45), (sdss, "sdss", "r", "i", 0.45),
              (hsc, "hsc", "g", "i", 2.0), (hsc, "hsc", "i", "J", 2.0), (hsc, "hsc", "J", "Ks", 2.0)]  # fmt: skip
    fig, axes = plt.subplots(2, 3, figsize=(14, 8), layout="constrained")
    for ax, (survey, name, b1, b2, zmax) in zip(axes.ravel(), panels, strict=True):
        g, coef = _galaxies(survey)
        # Colours corrected for Galactic extinction so that they compare with the templates'.
        col = (g[f"mag_{b1}"] - coef[b1] * g["ebv"]) - (g[f"mag_{b2}"] - coef[b2] * g["ebv"])
        good = (g[f"magerr_{b1}"] < 0.15) & (g[f"magerr_{b2}"] < 0.15)
        sc = ax.scatter(g["z_true"][good], col[good], c=g["sed_type"][good], cmap="coolwarm_r", s=4, vmin=0, vmax=3)
        preset = get_preset(name)
        _tracks(ax, colour_grid(tuple(preset.filters.items())), preset.ref_band, b1, b2, zmax)
        ax.set_xlim(0, zmax)
        lo, hi = np.nanpercentile(col[good], [0.5, 99.5])
        ax.set_ylim(lo - 0.3, hi + 0.3)
        ax.set_xlabel("z_true")
        ax.set_ylabel(f"{b1} - {b2}")
        ax.set_title(f"{name}: {good.sum()} galaxies, errors < 0.15", fontsize=10)
    axes[0, 0].legend(fontsize=7)
    fig.colorbar(sc, ax=axes, label="type t (0 E, 1 Sbc, 2 Scd, 3 Im)", shrink=0.6)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hsc", default="/tmp/sim_hsc2000", type=Path)
    parser.add_argument("--sdss", default="/tmp/sim_sdss_demo", type=Path)
    parser.add_argument("--out-dir", default="/tmp", type=Path)
    args = parser.parse_args(argv)
    hsc = _ensure(args.hsc, {"preset": "hsc", "n_sources": 2000, "seed": 42})
    sdss = _ensure(args.sdss, {"preset": "sdss", "n_sources": 3500, "seed": 42, "mag_range": [14.0, 18.3]})
    gallery(hsc, args.out_dir / "sim_gallery.png")
    colour_tracks(sdss, hsc, args.out_dir / "sim_colour_tracks.png")


if __name__ == "__main__":
    main()
