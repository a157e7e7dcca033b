"""Networks: the backbone interface, the paper's ResNet26, torchvision's ResNets, residual adapters."""

from .adapters import add_residual_adapters, count_trainable, freeze_for_adaptation, has_residual_adapters
from .backbone import (BACKBONES, Backbone, ResidualAdapter, backbone_class, build_backbone, load_backbone_state,
                       register_backbone)
from .resnet import FEATURE_LAYERS, ResNet26, resnet26
from .torchvision_resnet import TORCHVISION_RESNETS, TorchvisionResNet, torchvision_cache_file, torchvision_record

__all__ = ["FEATURE_LAYERS", "ResNet26", "resnet26", "add_residual_adapters", "freeze_for_adaptation",
           "has_residual_adapters", "count_trainable", "Backbone", "BACKBONES", "ResidualAdapter", "backbone_class",
           "build_backbone", "register_backbone", "load_backbone_state", "TorchvisionResNet", "TORCHVISION_RESNETS",
           "torchvision_record", "torchvision_cache_file"]
