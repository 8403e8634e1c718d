"""Folds: the deterministic assignment of objects to cross-validation folds, and the subsets drawn inside them."""

from __future__ import annotations

import numpy as np

# seeds the one permutation of a fold's training objects that every train_fraction subset is a prefix of
FRACTION_SEED = 104729


def assign_folds(n: int, n_folds: int, seed: int) -> np.ndarray:
    """Fold of each of ``n`` objects: a seeded permutation dealt round-robin, so fold sizes differ by at most one."""
    folds = np.empty(n, dtype=np.int64)
    folds[np.random.default_rng(seed).permutation(n)] = np.arange(n) % n_folds
    return folds


def evaluated_folds(folds: dict) -> list[int]:
    """The test folds a run makes (config ``folds``): ``test`` when it names some, else every fold."""
    return list(folds["test"] or range(folds["n"]))


def validation_fraction(training: dict) -> float:
    """The share of the training folds held out for validation: ``training.val_fraction`` when given, else none
    (the paper trains on all four other folds) or 0.1 when early stopping needs a validation set."""
    if training.get("val_fraction") is not None:
        return float(training["val_fraction"])
    return 0.1 if training.get("early_stopping_patience") else 0.0


def split_inner(train_idx: np.ndarray, val_fraction: float, seed: int, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner validation split drawn from the training folds only, never from the test fold."""
    perm = np.random.default_rng([seed, fold, 7919]).permutation(train_idx)
    n_val = int(round(val_fraction * len(perm)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def fraction_subset(train_idx: np.ndarray, fraction: float, fold: int) -> np.ndarray:
    """The training objects a model with ``train_fraction`` uses: the first ``round(fraction * n)`` of one fixed
    permutation of the fold's training objects, sorted.

    The permutation depends on the fold alone (not on the model or the seed), so at a given fold every model and
    seed trains on the same objects, and a smaller fraction's subset lies inside a larger one's.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    perm = np.random.default_rng([fold, FRACTION_SEED]).permutation(np.sort(np.asarray(train_idx, dtype=np.int64)))
    return np.sort(perm[: int(round(fraction * len(perm)))])
