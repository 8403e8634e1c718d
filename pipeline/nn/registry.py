"""timm-like model registry: ``build_model(name, bands, n_bins, image_size, **options)``."""

from __future__ import annotations

import inspect

from torch import nn

_MODELS: dict[str, type] = {}


def register(name: str):
    """Class decorator adding a network under ``name``."""

    def add(cls):
        _MODELS[name] = cls
        return cls

    return add


def list_models() -> list[str]:
    """Registered model names."""
    return sorted(_MODELS)


def build_model(name: str, bands, n_bins: int, image_size: int = 64, **options) -> nn.Module:
    """Build network ``name`` for ``bands`` (sorted by wavelength) and ``n_bins`` redshift classes.

    Raises ``ValueError`` naming an unknown model or option and the valid ones.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}: valid are {', '.join(list_models())}")
    cls = _MODELS[name]
    valid = [
        p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "bands", "n_bins", "image_size")
    ]
    bad = sorted(set(options) - set(valid))
    if bad:
        raise ValueError(f"unknown option(s) {bad} for model {name!r}: valid are {valid}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    return cls(list(bands), int(n_bins), int(image_size), **options)


def model_class(name: str) -> type:
    """The class registered as ``name``; ``ValueError`` naming the valid ones otherwise."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}: valid are {', '.join(list_models())}")
    return _MODELS[name]
