"""Networks: the backbone interface, the paper's ResNet26, torchvision's ResNets, residual adapters."""

from .adapters import add_residual_adapters, count_trainable, freeze_for_adaptation, has_residual_adapters
from .backbone import BACKBONES, Backbone, ResidualAdapter, backbone_class, build_backbone, register_backbone
from .resnet import FEATURE_LAYERS, ResNet26, resnet26
from .torchvision_resnet import TORCHVISION_RESNETS, TorchvisionResNet

__all__ = ["FEATURE_LAYERS", "ResNet26", "resnet26", "add_residual_adapters", "freeze_for_adaptation",
           "has_residual_adapters", "count_trainable", "Backbone", "BACKBONES", "ResidualAdapter", "backbone_class",
           "build_backbone", "register_backbone", "TorchvisionResNet", "TORCHVISION_RESNETS"]
