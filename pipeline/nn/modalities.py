"""Modalities: subsets of wavelength-sorted bands processed by separate branches (paper Sec. 4.1, Table C.2)."""

from __future__ import annotations


def modalities(bands, size: int, order=1) -> list[tuple[str, ...]]:
    """Modalities of ``size`` bands; an order-k modality takes bands i, i+k, i+2k, ... (k=1: adjacent bands).

    Parameters
    ----------
    bands : sequence of str
        Band names sorted by wavelength.
    size : int
        Bands per modality (1: every band alone).
    order : int or sequence of int
        Order(s); modalities are listed order by order, then by first band.

    Returns
    -------
    list of tuple of str
    """
    bands = list(bands)
    orders = [order] if isinstance(order, int) else list(order)
    if size < 1 or size > len(bands):
        raise ValueError(f"modality size must be in 1..{len(bands)}, got {size}")
    if not orders or any(not isinstance(k, int) or k < 1 for k in orders):
        raise ValueError(f"modality orders must be positive integers, got {order!r}")
    out = []
    for k in orders:
        span = (size - 1) * k
        mods = [tuple(bands[i : i + span + 1 : k]) for i in range(len(bands) - span)]
        if size == 1:
            mods = [(b,) for b in bands]
        out += [m for m in mods if m not in out]
    if not out:
        raise ValueError(f"no modality of size {size} and order(s) {orders} fits {len(bands)} bands")
    return out


def modality_name(mod) -> str:
    """``("u", "g")`` -> ``"u_g"``."""
    return "_".join(mod)
