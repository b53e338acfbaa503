"""ResNet-18 keypoint head (TPSMM, reused by CPAB): K transforms x 5 keypoints regressed globally.

Unlike FOMM's heatmap detector, a ResNet-18 (randomly initialised) regresses all
``num_tps * 5`` keypoints at once; a sigmoid maps them to (-1, 1), x first. The attribute name
``fg_encoder`` is the released checkpoints' key prefix. :class:`ResNet18` is torchvision's
ResNet-18 module tree (same parameter names) with the base width as a parameter, so that demos
can scale it down by config; at width 64 it is torchvision's ``resnet18``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

#: Keypoints per TPS transform (TPSMM fits each spline to 5 point pairs).
POINTS_PER_TPS = 5


class ResNet18(nn.Module):
    """torchvision's ResNet-18 layout (``conv1, bn1, layer1..4, fc``) with base ``width``."""

    def __init__(self, num_outputs: int, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = width
        for index, mult in enumerate((1, 2, 4, 8)):
            planes, stride = width * mult, 1 if index == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
            layer = nn.Sequential(BasicBlock(inplanes, planes, stride, downsample), BasicBlock(planes, planes))
            self.add_module(f"layer{index + 1}", layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_outputs)
        # torchvision's initialisation
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNetKeypoints(nn.Module):
    """Image (B, C, H, W) -> ``{"fg_kp": (B, num_tps * 5, 2)}`` in (-1, 1).

    Extra keyword arguments (the rest of a config's ``common_params``) are accepted and ignored,
    as the reference builds the detector from that section.
    """

    def __init__(self, num_tps: int, num_channels: int = 3, width: int = 64, **_: Any) -> None:
        super().__init__()
        self.num_tps = num_tps
        self.fg_encoder = ResNet18(num_tps * POINTS_PER_TPS * 2, num_channels, width)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = torch.sigmoid(self.fg_encoder(image)) * 2 - 1
        return {"fg_kp": out.view(image.shape[0], self.num_tps * POINTS_PER_TPS, 2)}
