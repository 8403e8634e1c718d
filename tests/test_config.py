"""The config schema: the demo validates, wrong keys and values are named, sections validate alone."""

from __future__ import annotations

import copy

import pytest

from pipeline.core.config import ConfigError, section_config, validate_config
from pipeline.core.folds import validation_fraction
from pipeline.tools.check_config import check_config


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
        (lambda c: c["models"]["baseline"].update(options={"widht": 0.1}), "models.baseline.options.widht: unknown"),
        (lambda c: c["models"]["baseline"].update(options={"width": "wide"}), "models.baseline.options.width: 'wide'"),
        (lambda c: c["models"]["multimodal"]["options"].update(fusion="soon"), "models.multimodal.options.fusion"),
        (lambda c: c["models"]["baseline"].update(loss={"classification": 0, "regression": 0}), "both 0"),
        (lambda c: c["training"].update(early_stopping_patience=3, val_fraction=0), "needs a validation set"),
        (lambda c: c["training"].update(seeds="some"), "training.seeds"),
    ],
)
def test_wrong_config_names_the_key(demo_config, mutate, message):
    cfg = copy.deepcopy(demo_config)
    mutate(cfg)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_config(cfg)


def test_derived_keys(demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["model_defaults"] = {"options": {"width": 0.3}}
    cfg["models"]["baseline"]["options"] = {}
    cfg["models"]["multimodal"]["options"]["width"] = 0.15
    cfg["models"]["baseline"]["loss"] = {"classification": 0, "regression_kind": "nmae"}
    cfg["training"]["seeds"] = "paper"
    check_config(cfg)
    assert cfg["models"]["baseline"]["options"] == {"width": 0.3}  # from model_defaults
    assert cfg["models"]["multimodal"]["options"]["width"] == 0.15  # its own wins
    assert cfg["models"]["baseline"]["loss"] == {"classification": 0, "regression": 1.0, "regression_kind": "nmae"}
    assert cfg["models"]["multimodal"]["loss"] == cfg["training"]["loss"]
    assert cfg["survey"]["name"] == "sdss" and cfg["training"]["seeds"] == [0, 1, 2, 3, 4]  # Sec. 3.4: 5 for SDSS
    hsc = copy.deepcopy(demo_config)
    hsc["simulation"]["preset"] = "hsc"
    hsc["survey"]["bands"] = ["g", "r", "i", "z", "y"]
    hsc["training"]["seeds"] = "paper"
    assert validate_config(hsc)["training"]["seeds"] == [0, 1, 2]


def test_validation_split_only_for_early_stopping():
    assert validation_fraction({"val_fraction": None, "early_stopping_patience": None}) == 0.0  # the paper's
    assert validation_fraction({"val_fraction": None, "early_stopping_patience": 5}) == 0.1
    assert validation_fraction({"val_fraction": 0.2, "early_stopping_patience": None}) == 0.2


def test_sections_validate_alone(demo_config):
    full = validate_config(copy.deepcopy(demo_config))
    part = section_config(full, ("training", "zgrid"), models=["multimodal"])
    assert list(part["models"]) == ["multimodal"]
    assert validate_config(copy.deepcopy(part), sections=("training", "zgrid", "models")) == part
    part["training"]["lr"] = -1
    with pytest.raises(ConfigError, match="training.lr"):
        validate_config(part, sections=("training", "zgrid", "models"))
