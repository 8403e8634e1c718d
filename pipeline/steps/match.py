"""Spec-z compilation and matching (``photoz match``): the training catalog of the paper's Section 2.4.

Several spectroscopic catalogs, each with its own columns and quality-flag convention, are reduced to secure
redshifts, deduplicated across surveys, matched to the photometric sources by sky position, cut, given E(B-V) and
assigned to cross-validation folds.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from pipeline.core import io, sky
from pipeline.core.extinction import ebv_at
from pipeline.core.folds import assign_folds

log = logging.getLogger("pipeline.specz")

DZ_CONFLICT = 0.01  # |dz|/(1+z) above which two secure measurements of one object are reported as disagreeing


def read_specz_catalog(cat: dict) -> tuple[pd.DataFrame, dict]:
    """Read one spectroscopic catalog described by its config entry; return the secure rows and the counts.

    The returned frame has columns ``ra, dec, z, flag, survey, rank``. Rows with NaN coordinates, redshift or flag
    are dropped and counted; coordinates out of range are an error naming the catalog.
    """
    name, cols = cat["name"], cat["columns"]
    table = io.read_table(cat["path"])
    missing = [f"{role}={col!r}" for role, col in cols.items() if col not in table.columns]
    if missing:
        raise ValueError(
            f"spec-z catalog {name!r} ({cat['path']}): missing column(s) {', '.join(missing)}; "
            f"columns present: {', '.join(map(str, table.columns))}"
        )
    df = pd.DataFrame({role: pd.to_numeric(table[col], errors="coerce") for role, col in cols.items()})
    n_in = len(df)
    bad = df[["ra", "dec", "z", "flag"]].isna().any(axis=1)
    if bad.any():
        log.warning("%s: dropped %d of %d rows with NaN ra/dec/z/flag", name, int(bad.sum()), n_in)
    df = df[~bad]
    out_of_range = (df.ra < 0) | (df.ra >= 360) | (df.dec.abs() > 90)
    if out_of_range.any():
        first = df[out_of_range].iloc[0]
        raise ValueError(
            f"spec-z catalog {name!r}: {int(out_of_range.sum())} row(s) with coordinates out of range "
            f"(ra in [0, 360), dec in [-90, 90] degrees expected; first: ra={first.ra}, dec={first.dec})"
        )
    lo, hi = cat["z_range"]
    secure = np.isin(df.flag.to_numpy(), np.asarray(cat["secure_flags"], dtype=float)) & df.z.between(lo, hi)
    df = df[secure].assign(survey=name, rank=int(cat["rank"]))
    counts = {"survey": name, "rows_in": n_in, "nan_dropped": int(bad.sum()), "secure": int(secure.sum())}
    log.info("%s: %d rows, %d secure in z [%g, %g]", name, n_in, counts["secure"], lo, hi)
    return df.reset_index(drop=True), counts


def deduplicate(specz: pd.DataFrame, radius_arcsec: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one measurement per object observed more than once (positions closer than the radius).

    The survey of lowest ``rank`` wins; among equals the choice is random with ``seed``. Returns the kept rows and
    the table of pairs of secure measurements that disagree by more than ``DZ_CONFLICT`` in dz/(1+z).
    """
    group = sky.groups_within(specz.ra.to_numpy(), specz.dec.to_numpy(), radius_arcsec)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(specz)), specz["rank"].to_numpy(), group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    kept = specz.iloc[order[first]].reset_index(drop=True)

    conflicts = []
    sizes = np.bincount(group)
    for g in np.flatnonzero(sizes > 1):
        members = specz.iloc[np.flatnonzero(group == g)]
        z = members.z.to_numpy()
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                dz = abs(z[a] - z[b]) / (1 + min(z[a], z[b]))
                if dz > DZ_CONFLICT:
                    ma, mb = members.iloc[a], members.iloc[b]
                    conflicts.append(
                        {
                            "ra": ma.ra,
                            "dec": ma.dec,
                            "survey_a": ma.survey,
                            "z_a": ma.z,
                            "flag_a": ma.flag,
                            "survey_b": mb.survey,
                            "z_b": mb.z,
                            "flag_b": mb.flag,
                            "dz_norm": dz,
                        }
                    )
    cols = ["ra", "dec", "survey_a", "z_a", "flag_a", "survey_b", "z_b", "flag_b", "dz_norm"]
    return kept, pd.DataFrame(conflicts, columns=cols)


def build_training_catalog(sources: pd.DataFrame, cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Compile, deduplicate, match, cut and fold: the whole ``photoz match`` step on in-memory tables.

    Parameters
    ----------
    sources : DataFrame
        Photometric sources with ``object_id, ra, dec`` (degrees) and optionally ``ebv``, ``mag_<band>``, ``is_star``.
    cfg : dict
        The validated workflow config (``specz``, ``selection``, ``folds`` and ``survey.mag_column`` are read).

    Returns
    -------
    training, summary, conflicts : DataFrame
        The training catalog (one row per source with a secure spec-z), the per-survey counts (the paper's Table 1)
        and the disagreeing duplicate pairs.
    """
    for col in ("object_id", "ra", "dec"):
        if col not in sources.columns:
            raise ValueError(f"source catalog: missing column {col!r}")
    if sources.object_id.duplicated().any():
        raise ValueError("source catalog: object_id is not unique")
    spz = cfg["specz"]
    parts, counts = zip(*(read_specz_catalog(c) for c in spz["catalogs"]), strict=True)
    compiled = pd.concat(parts, ignore_index=True)
    if compiled.empty:
        raise ValueError("no secure spec-z in any catalog: check secure_flags, z_range and the flag columns")
    unique, conflicts = deduplicate(compiled, spz["match_radius_arcsec"], spz["duplicate_seed"])
    log.info(
        "compilation: %d secure measurements, %d after duplicates, %d conflicting pairs",
        len(compiled),
        len(unique),
        len(conflicts),
    )

    idx, sep = sky.nearest(unique.ra, unique.dec, sources.ra, sources.dec, spz["match_radius_arcsec"])
    kept = unique.assign(source_index=idx, match_sep_arcsec=sep)[idx >= 0]
    # one spectrum per source: the nearest wins
    kept = kept.sort_values("match_sep_arcsec", kind="stable").drop_duplicates("source_index")
    if kept.empty:
        raise ValueError(
            f"no spec-z matched any source within {spz['match_radius_arcsec']} arcsec: "
            "do the spec-z catalogs cover the sources' sky?"
        )
    matched = sources.iloc[kept.source_index.to_numpy()].reset_index(drop=True)
    training = matched.assign(
        z_spec=kept.z.to_numpy(),
        specz_survey=kept.survey.to_numpy(),
        specz_flag=kept.flag.to_numpy(),
        match_sep_arcsec=kept.match_sep_arcsec.to_numpy(),
    )
    n_matched = training.specz_survey.value_counts()

    sel = cfg["selection"]
    keep = training.z_spec.between(*sel["z_range"]).to_numpy().copy()
    mag_col = cfg["survey"]["mag_column"]
    if sel["mag_max"] is not None:
        if mag_col not in training.columns:
            raise ValueError(f"selection.mag_max is set but the source catalog has no column {mag_col!r}")
        keep &= (training[mag_col] <= sel["mag_max"]).to_numpy()
    if sel["remove_stars"] and "is_star" in training.columns:
        keep &= ~training.is_star.astype(bool).to_numpy()
    training = training[keep].sort_values("object_id").reset_index(drop=True)
    if training.empty:
        raise ValueError("the selection cuts removed every matched source: check selection.mag_max and z_range")
    if "ebv" not in training.columns or training.ebv.isna().any():
        fill = ebv_at(training.ra, training.dec)
        training["ebv"] = training["ebv"].fillna(pd.Series(fill)) if "ebv" in training.columns else fill
    training["fold"] = assign_folds(len(training), cfg["folds"]["n"], cfg["folds"]["seed"])

    summary = pd.DataFrame(counts)
    for column, per_survey in (
        ("after_duplicates", unique.survey.value_counts()),
        ("matched", n_matched),
        ("final", training.specz_survey.value_counts()),
    ):
        summary[column] = summary.survey.map(per_survey).fillna(0).astype(int)
    total = summary.drop(columns="survey").sum().to_dict()
    summary = pd.concat([summary, pd.DataFrame([{"survey": "total", **total}])], ignore_index=True)
    return training, summary, conflicts


def main(argv=None) -> None:
    from pipeline.core import log as plog
    from pipeline.core.config import load_config

    parser = argparse.ArgumentParser(prog="photoz match", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="workflow config (specz, selection, folds are read)")
    parser.add_argument("--sources", help="source catalog (default: survey.sources of the config)")
    parser.add_argument("--out", required=True, help="training catalog (Parquet)")
    parser.add_argument("--summary", help="per-survey counts, like the paper's Table 1 (CSV)")
    parser.add_argument("--conflicts", help="pairs of secure duplicates that disagree (CSV)")
    args = parser.parse_args(argv)
    plog.setup()
    cfg = load_config(args.config, sections=("survey", "specz", "selection", "folds"))
    if not (args.sources or cfg["survey"].get("sources")):
        parser.error("--sources is required when the config has no survey.sources")
    sources = io.read_table(args.sources or cfg["survey"]["sources"])
    training, summary, conflicts = build_training_catalog(sources, cfg)
    io.write_parquet(training, args.out)
    log.info("wrote %d training objects to %s\n%s", len(training), args.out, summary.to_string(index=False))
    for table, path in ((summary, args.summary), (conflicts, args.conflicts)):
        if path:
            with io.atomic_path(path) as tmp:
                table.to_csv(tmp, index=False)


if __name__ == "__main__":
    main()
