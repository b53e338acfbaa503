"""Shared building blocks: the few-output convolution heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.blocks import ROW_SUM_MAX_OUTPUTS, FewOutputConv2d, conv2d_by_rows


@pytest.mark.parametrize(
    ("in_c", "out_c", "kernel", "padding", "size"),
    [
        (16, 3, 7, 3, (64, 64)),  # a generator's image head
        (60, 1, 7, 3, (32, 20)),  # an occlusion head
        (8, 4, 7, 0, (21, 17)),  # an unpadded Jacobian head (FOMM's released pad 0)
        (5, 2, (5, 3), (1, 2), (12, 9)),  # rectangular kernel, unequal padding
    ],
)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_conv_by_rows_is_conv2d_up_to_rounding(in_c, out_c, kernel, padding, size, layout):
    torch.manual_seed(0)
    conv = nn.Conv2d(in_c, out_c, kernel, padding=padding)
    x = torch.randn(3, in_c, *size).contiguous(memory_format=layout)
    with torch.no_grad():
        expected = conv(x)
        ours = conv2d_by_rows(x, conv.weight, conv.bias, conv.padding)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    # a sign or row-order slip would be far above rounding
    assert not torch.allclose(ours, conv2d_by_rows(x, conv.weight.flip(2), conv.bias, conv.padding))


def test_few_output_conv_keeps_nn_conv2d_for_training_and_large_heads():
    torch.manual_seed(0)
    head = FewOutputConv2d(6, 1, 7, padding=3)
    assert set(head.state_dict()) == {"weight", "bias"}  # released checkpoints load into it
    x = torch.randn(2, 6, 16, 16)
    # autograd on: nn.Conv2d itself, bit for bit (training stays the reference's arithmetic)
    assert torch.equal(head(x), F.conv2d(x, head.weight, head.bias, padding=3))
    with torch.no_grad():
        by_rows = head(x)
        torch.testing.assert_close(by_rows, F.conv2d(x, head.weight, head.bias, padding=3), rtol=0, atol=1e-5)
        wide = FewOutputConv2d(6, ROW_SUM_MAX_OUTPUTS + 1, 7, padding=3)
        assert torch.equal(wide(x), F.conv2d(x, wide.weight, wide.bias, padding=3))
        strided = FewOutputConv2d(6, 1, 7, padding=3, stride=2)
        assert torch.equal(strided(x), F.conv2d(x, strided.weight, strided.bias, padding=3, stride=2))


def test_few_output_conv_runs_by_rows_at_inference(monkeypatch):
    import methods.blocks as blocks

    calls = []
    def spy(x, weight, bias, padding):
        calls.append(padding)
        return F.conv2d(x, weight, bias, padding=padding)

    monkeypatch.setattr(blocks, "conv2d_by_rows", spy)
    head = FewOutputConv2d(6, 3, 7, padding=3)
    x = torch.randn(2, 6, 16, 16)
    head(x)
    assert not calls
    with torch.no_grad():
        head(x)
    assert len(calls) == 1
