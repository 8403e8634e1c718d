"""The config schema: the demo validates, wrong keys and values are named, sections validate alone."""

from __future__ import annotations

import copy

import pytest

from pipeline.core.config import ConfigError, section_config, validate_config


def test_demo_config_is_valid_and_filled(demo_config):
    cfg = validate_config(copy.deepcopy(demo_config))
    assert cfg["survey"]["mosaics"]["u"] == "results/survey/mosaics/u/*.fits"
    assert cfg["training"]["loss"]["regression_kind"] == "mae"  # default filled in a nested block
    assert cfg["specz"]["catalogs"][0]["rank"] == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["training"].update(epoch=3), "'epoch' was unexpected"),
        (lambda c: c["cutouts"].update(size=8), "cutouts.size"),
        (lambda c: c["models"]["baseline"].update(arch="resnet"), "models.baseline.arch"),
        (lambda c: c["survey"].update(bands=["u", "q"]), "unknown band 'q'"),
        (lambda c: c["evaluation"]["compare"].append({"baseline": "baseline", "candidate": "nope"}), "'nope'"),
        (lambda c: c["specz"]["catalogs"][0].pop("columns"), "specz.catalogs.0"),
        (lambda c: c.pop("simulation"), "survey.mosaics: required"),
    ],
)
def test_wrong_config_names_the_key(demo_config, mutate, message):
    cfg = copy.deepcopy(demo_config)
    mutate(cfg)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate_config(cfg)


def test_sections_validate_alone(demo_config):
    full = validate_config(copy.deepcopy(demo_config))
    part = section_config(full, ("training", "zgrid"), models=["multimodal"])
    assert list(part["models"]) == ["multimodal"]
    assert validate_config(copy.deepcopy(part), sections=("training", "zgrid", "models")) == part
    part["training"]["lr"] = -1
    with pytest.raises(ConfigError, match="training.lr"):
        validate_config(part, sections=("training", "zgrid", "models"))
