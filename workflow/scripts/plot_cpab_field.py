"""Draw a sampled CPAB velocity field and its warped grid (docs/figures/cpab_field.png).

Usage: ``python workflow/scripts/plot_cpab_field.py [--out PATH] [--seed N]``. Uses only
torch and Pillow (no matplotlib): the left panel shows the 4x4 triangle tessellation and
the velocity field v_theta as arrows, the right panel a regular grid deformed by T_theta.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from methods.motion.cpab import CPAB, Prior, Tessellation  # noqa: E402

PANEL = 380  # pixels per panel side
MARGIN = 30


def _to_px(p: torch.Tensor, ox: int) -> list[tuple[float, float]]:
    """[-1, 1]^2 (y down, as grid_sample) -> pixel coordinates in a panel at x offset ox."""
    s = PANEL / 2
    return [(ox + MARGIN + (x + 1) * s, MARGIN + 60 + (y + 1) * s) for x, y in p.tolist()]


def _tessellation(draw: ImageDraw.ImageDraw, tess: Tessellation, ox: int) -> None:
    for cell in tess.cell_vertices():
        pts = _to_px(torch.tensor(cell + [cell[0]]), ox)
        draw.line(pts, fill=(200, 200, 215), width=1)


def _arrows(draw, cpab: CPAB, theta: torch.Tensor, ox: int, n: int = 15) -> None:
    lin = torch.linspace(-0.93, 0.93, n, dtype=torch.float64)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    pts = torch.stack([gx, gy], -1).reshape(1, -1, 2)
    vel = cpab.velocity(pts, theta)[0]
    scale = 0.9 * (2 / n) / float(vel.norm(dim=-1).max())  # longest arrow ~ one spacing
    for p, v in zip(pts[0], vel, strict=True):
        q = p + scale * v
        (x0, y0), (x1, y1) = _to_px(torch.stack([p, q]), ox)
        draw.line([(x0, y0), (x1, y1)], fill=(30, 70, 160), width=2)
        ang = math.atan2(y1 - y0, x1 - x0)
        for da in (2.6, -2.6):
            draw.line([(x1, y1), (x1 + 5 * math.cos(ang + da), y1 + 5 * math.sin(ang + da))],
                      fill=(30, 70, 160), width=2)


def _warped_grid(draw, cpab: CPAB, theta: torch.Tensor, ox: int, lines: int = 17) -> None:
    dense = torch.linspace(-1, 1, 200, dtype=torch.float64)
    for c in torch.linspace(-1, 1, lines, dtype=torch.float64):
        for pts in (torch.stack([dense, c.expand(200)], -1), torch.stack([c.expand(200), dense], -1)):
            warped = cpab.transform(pts[None], theta)[0]
            draw.line(_to_px(warped, ox), fill=(160, 40, 40), width=2)
    box = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=torch.float64)
    draw.line(_to_px(box, ox), fill=(120, 120, 120), width=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="docs/figures/cpab_field.png")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    cpab = CPAB(Tessellation(4, 4), Prior(length_scale=0.5, variance=1.0))
    theta = 0.35 * cpab.sample(1, generator=torch.Generator().manual_seed(args.seed))
    width = 2 * (PANEL + 2 * MARGIN)
    img = Image.new("RGB", (width, PANEL + 2 * MARGIN + 60), "white")
    draw = ImageDraw.Draw(img)
    right = PANEL + 2 * MARGIN
    draw.text((MARGIN, 10), "velocity field v_theta (4x4 triangles, d = 58)", fill="black")
    draw.text((right + MARGIN, 10), "regular grid warped by T_theta (closed form)", fill="black")
    _tessellation(draw, cpab.tess, 0)
    _arrows(draw, cpab, theta, 0)
    _warped_grid(draw, cpab, theta, right)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
