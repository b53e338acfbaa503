"""The compiled (numba, per point) hit-time search against the tensor-op one it replaces on CPU."""

from __future__ import annotations

import pytest
import torch

from methods.motion.cpab import CPAB, Tessellation
from methods.motion.cpab.integrate import plan_segments, replay_segments

CASES = [
    # (tessellation, theta scale x the prior's): 5x has cells turning by more than pi over a
    # step, so the quarter-turn sub-steps and the excursion check are exercised.
    (Tessellation(4, 4), 1.0),
    (Tessellation(4, 4), 5.0),
    (Tessellation(6, 6), 3.0),
    (Tessellation(4, 4, zero_boundary=True), 5.0),
    (Tessellation(3, 3, volume_preserving=True), 2.0),
    (Tessellation(4, 3, kind="squares"), 1.0),
    (Tessellation(4, 3, kind="squares", zero_boundary=True), 5.0),
]


def _case(tess: Tessellation, scale: float, points: int = 200, seed: int = 0):
    cpab = CPAB(tess)
    g = torch.Generator().manual_seed(seed)
    theta = scale * cpab.sample(6, generator=g).double()
    # Points beyond the domain too: boundary cells' regions extend outside it.
    x = (torch.rand(6, points, 2, generator=g, dtype=torch.float64) * 2 - 1) * 1.05
    return cpab, cpab.cell_matrices(theta), x


@pytest.mark.parametrize("tess,scale", CASES, ids=lambda v: str(v))
def test_compiled_search_equals_tensor_search(tess, scale):
    cpab, a, x = _case(tess, scale)
    seg_t, end_t = plan_segments(x, a, cpab.tess, compiled=False)
    seg_c, end_c = plan_segments(x, a, cpab.tess, compiled=True)
    # Same cells visited in the same rounds; durations and end points agree to the search's
    # tolerance (exit-time residual 1e-11), amplified at most a few hundred-fold by fast cells.
    assert len(seg_c) == len(seg_t)
    for (i_t, g_t, d_t), (i_c, g_c, d_c) in zip(seg_t, seg_c, strict=True):
        assert torch.equal(i_t, i_c) and torch.equal(g_t, g_c)
        assert i_c.dtype == torch.long and g_c.dtype == torch.long and d_c.dtype == torch.float64
        assert (d_t - d_c).abs().max() < 1e-9
    assert (end_t - end_c).abs().max() < 1e-9
    # The compiled plan replays (with a graph) to its own end points.
    assert (replay_segments(x, a, seg_c) - end_c).abs().max() < 1e-9


def test_compiled_search_is_the_cpu_default_and_gradients_flow_through_it():
    cpab, a, x = _case(Tessellation(4, 4), 1.0, points=20)
    theta = cpab.sample(2, generator=torch.Generator().manual_seed(3)).double().requires_grad_()
    y = cpab.transform(x[:2], theta)  # closed form: plan (compiled on the CPU) + replay
    _, end = plan_segments(x[:2], cpab.cell_matrices(theta), cpab.tess, compiled=False)
    assert (y - end).abs().max() < 1e-9
    y.sum().backward()
    assert torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0


def test_compiled_search_on_empty_and_single_point_batches():
    cpab, a, x = _case(Tessellation(4, 4), 1.0, points=1)
    segments, end = plan_segments(x[:0], a[:0], cpab.tess, compiled=True)
    assert segments == [] and end.shape == (0, 1, 2)
    seg_c, end_c = plan_segments(x, a, cpab.tess, compiled=True)
    _, end_t = plan_segments(x, a, cpab.tess, compiled=False)
    assert (end_c - end_t).abs().max() < 1e-9
