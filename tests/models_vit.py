"""A small vision transformer by import path: ``sweep.archs: [tests.models_vit:tiny_vit]``.

torchvision's ``VisionTransformer`` (class token, learned position embedding, pre-norm
encoder blocks) at a size that trains in seconds on a CPU. Its modules, as ``named_modules()``
names them: ``conv_proj`` (the patch embedding, output (n, width, h/patch, w/patch)),
``encoder.layers.encoder_layer_{i}`` (output (n, tokens, width), tokens = patches + 1) and
``encoder`` (after the final LayerNorm), ``heads``. No BatchNorm anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchvision.models.vision_transformer import VisionTransformer


def tiny_vit(width: int, num_classes: int, input_shape: Sequence[int], depth: int = 2, heads: int = 2,
             patch: int = 8, mlp_ratio: int = 2) -> nn.Module:
    """``VisionTransformer`` with ``width`` = hidden size (a multiple of ``heads``), ``depth``
    encoder blocks, square ``patch``-pixel patches of (c, h, w) images (h = w, a multiple of
    ``patch``); any channel count (torchvision's patch embedding expects 3: replaced)."""
    c, h, w = (int(s) for s in input_shape)
    if h != w or h % patch:
        raise ValueError(f"tiny_vit needs square images whose side is a multiple of patch={patch}, got {h}x{w}")
    net = VisionTransformer(image_size=h, patch_size=patch, num_layers=depth, num_heads=heads,
                            hidden_dim=width, mlp_dim=mlp_ratio * width, num_classes=num_classes)
    if c != 3:
        net.conv_proj = nn.Conv2d(c, width, kernel_size=patch, stride=patch)
    return net
