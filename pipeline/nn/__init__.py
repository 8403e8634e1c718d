"""Networks: P19, the baseline inception net, the multimodal net and plain CNNs, built by name through a registry."""

from .baseline import Baseline
from .modalities import modalities
from .multimodal import Multimodal
from .p19 import P19
from .plain import Plain
from .registry import build_model, list_models, register

register("p19")(P19)
register("baseline")(Baseline)
register("multimodal")(Multimodal)
register("plain")(Plain)

__all__ = ["build_model", "list_models", "modalities", "Baseline", "Multimodal", "P19", "Plain"]
