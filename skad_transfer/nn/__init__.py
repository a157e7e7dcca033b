"""Networks: the paper's ResNet26 and its residual adapters."""

from .adapters import add_residual_adapters, count_trainable, freeze_for_adaptation, has_residual_adapters
from .resnet import FEATURE_LAYERS, ResNet26, resnet26

__all__ = ["FEATURE_LAYERS", "ResNet26", "resnet26", "add_residual_adapters", "freeze_for_adaptation",
           "has_residual_adapters", "count_trainable"]
