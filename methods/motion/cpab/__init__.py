"""Fast, exact, differentiable CPAB transformations (Freifeld et al., TPAMI 2017) in torch.

See docs/cpab.md. Quick start::

    from methods.motion.cpab import CPAB, Tessellation
    cpab = CPAB(Tessellation(4, 4))                  # 4x4 squares, 4 triangles each: d = 58
    theta = cpab.fit(kp_driving, kp_source)          # (S, N, 2) keypoints -> (S, 58)
    grid = cpab.flow(theta, 64, 64)                  # (S, 64, 64, 2) for grid_sample
"""

from .basis import basis
from .core import CPAB
from .fit import fit_adam, fit_fast, fit_objective
from .integrate import integrate_closed_form, integrate_numeric
from .prior import Prior, prior_covariance, sample_theta
from .tessellation import Tessellation

__all__ = [
    "CPAB",
    "Prior",
    "Tessellation",
    "basis",
    "fit_adam",
    "fit_fast",
    "fit_objective",
    "integrate_closed_form",
    "integrate_numeric",
    "prior_covariance",
    "sample_theta",
]
