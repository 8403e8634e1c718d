"""Networks: P19, the baseline inception net and the multimodal net, built by name through a registry."""

from .baseline import Baseline
from .modalities import modalities
from .multimodal import Multimodal
from .p19 import P19
from .registry import build_model, list_models, register

register("p19")(P19)
register("baseline")(Baseline)
register("multimodal")(Multimodal)

__all__ = ["build_model", "list_models", "modalities", "Baseline", "Multimodal", "P19"]
