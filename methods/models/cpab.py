"""CPAB motion model (Wang et al., AAAI 2024) as an :class:`AnimationModel`, on top of TPSMM.

One training step (:meth:`CPABModel.forward`):

1. TPSMM's ResNet-18 head regresses N x 5 keypoints on source and driving (``kp_detector``);
2. TPSMM's background predictor gives the background affine (``bg_predictor``, from ``bg_start``);
3. motion (:class:`CPABMotion`): N local CPAB transforms (4x4 cells), transform k fitted so that
   it maps driving keypoint group k onto the source's; one global CPAB transform (6x6 cells)
   fitted to all N x 5 keypoints (``global: false`` leaves it out); each fitted transform is
   evaluated in closed form (or by the release's numeric steps) on the dense-motion grid;
4. TPSMM's dense-motion network combines background + local + global grids (N + 2 transforms)
   by per-pixel softmax weights, with TPS-style dropout that never drops the background, and
   predicts the occlusion masks; TPSMM's inpainting network renders the driving frame;
5. losses: TPSMM's (perceptual, equivariance, warp, background) plus, when their weights are not
   zero, the SAM keypoint-semantic loss and the DINO structure loss (built lazily; their
   weights files come from the weights registry).

The fit is a config choice (``model_params.cpab_params``, see ``docs/cpab_method.md``):
``fast`` (the library's regularised Gauss-Newton fit) or ``adam`` (the release's procedure), and
whether the keypoint head receives gradients through the fit (``keypoint_gradient``; the
release detaches the keypoints, so nothing reaches the head through the CPAB grids).

Checkpoints hold ``inpainting_network``, ``dense_motion_network``, ``kp_detector`` and, with
``bg: true``, ``bg_predictor``, as the release's (module names as its code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from data_prep.weights import DEFAULT_WEIGHTS_DIR
from methods.base import Motion
from methods.blocks import make_coordinate_grid
from methods.detectors.resnet_keypoints import POINTS_PER_TPS
from methods.models.tpsmm import TPSMM
from methods.motion.cpab import CPAB, Tessellation, fit_adam
from methods.motion.cpab.libcpab_theta import libcpab_to_ours
from methods.registry import register_method

#: Keys of ``model_params.cpab_params`` (all required by the schema; no defaults here).
CPAB_PARAM_KEYS = (
    "fit",
    "fit_iterations",
    "global_iterations_scale",
    "fit_lr",
    "fit_coordinates",
    "fit_init",
    "keypoint_gradient",
    "tessellation",
    "local_cells",
    "global_cells",
    "global",
    "zero_boundary",
    "integration",
    "integration_steps",
)


class CPABMotion:
    """Fits the local and global CPAB transforms to keypoints and evaluates their dense grids.

    Args:
        num_cpab: N, the number of local transforms (keypoint groups of 5).
        params: ``model_params.cpab_params`` (keys :data:`CPAB_PARAM_KEYS`).

    The fits run on the CPU in float64 (the library's fit builds its work tensors there and the
    problems are tiny: 5 or 5 N points); the grids are evaluated where the keypoints live.
    """

    def __init__(self, num_cpab: int, params: dict[str, Any]) -> None:
        missing = [k for k in CPAB_PARAM_KEYS if k not in params]
        if missing:
            raise KeyError(f"model_params.cpab_params lacks {missing}")
        self.num_cpab = int(num_cpab)
        self.fit_method = str(params["fit"])
        self.keypoint_gradient = bool(params["keypoint_gradient"])
        if self.fit_method not in ("fast", "adam"):
            raise ValueError(f"cpab_params.fit must be 'fast' or 'adam', got {self.fit_method!r}")
        if self.keypoint_gradient and self.fit_method != "fast":
            # The release's Adam fit detaches the keypoints; only the fast fit has the
            # implicit-function gradient.
            raise ValueError("cpab_params.keypoint_gradient: true needs fit: fast (adam detaches)")
        self.iterations = int(params["fit_iterations"])
        self.global_iterations = int(
            round(self.iterations * float(params["global_iterations_scale"]))
        )
        self.lr = float(params["fit_lr"])
        self.coordinates = str(params["fit_coordinates"])
        if self.coordinates not in ("ours", "libcpab"):
            raise ValueError(f"cpab_params.fit_coordinates must be 'ours' or 'libcpab', got {self.coordinates!r}")
        self.init = float(params["fit_init"])
        self.integration = str(params["integration"])
        self.steps = int(params["integration_steps"])
        kind, zero_boundary = str(params["tessellation"]), bool(params["zero_boundary"])
        nx, ny = (int(v) for v in params["local_cells"])
        self.local = CPAB(Tessellation(nx, ny, kind=kind, zero_boundary=zero_boundary))
        self.global_: CPAB | None = None
        if bool(params["global"]):
            gx, gy = (int(v) for v in params["global_cells"])
            self.global_ = CPAB(Tessellation(gx, gy, kind=kind, zero_boundary=zero_boundary))
        # The (d, d) maps from libcpab's theta to ours, once per transform rather than per fit.
        self._to_ours: dict[bool, torch.Tensor] = {}
        if self.coordinates == "libcpab":
            for global_, cpab in ((False, self.local), (True, self.global_)):
                if cpab is not None:
                    self._to_ours[global_] = libcpab_to_ours(cpab.tess, cpab.basis)

    @property
    def num_transforms(self) -> int:
        """Foreground transforms reaching the dense-motion network: N (+1 global)."""
        return self.num_cpab + (self.global_ is not None)

    def fit(
        self, cpab: CPAB, kp_driving: torch.Tensor, kp_source: torch.Tensor, global_: bool
    ) -> torch.Tensor:
        """theta (S, d) on the CPU with T_theta(kp_driving) ~ kp_source; (S, P, 2) keypoints."""
        if not self.keypoint_gradient:
            kp_driving, kp_source = kp_driving.detach(), kp_source.detach()
        kd, ks = kp_driving.cpu().double(), kp_source.cpu().double()
        if self.fit_method == "fast":
            return cpab.fit(kd, ks, method="fast")
        iterations = self.global_iterations if global_ else self.iterations
        coordinates = self._to_ours.get(global_)  # None: Adam in our theta
        with torch.enable_grad():  # Adam needs autograd, also under no_grad inference
            return fit_adam(
                cpab,
                kd,
                ks,
                iterations=iterations,
                lr=self.lr,
                method=self.integration,
                steps=self.steps,
                coordinates=coordinates,
                init=self.init,
            )

    def _grid(
        self, cpab: CPAB, theta: torch.Tensor, size: tuple[int, int], like: torch.Tensor
    ) -> torch.Tensor:
        h, w = size
        theta = theta.to(like.device)
        points = make_coordinate_grid((h, w), like.dtype, like.device).reshape(1, h * w, 2)
        points = points.expand(theta.shape[0], -1, -1).contiguous()
        out = cpab.transform(points, theta, method=self.integration, steps=self.steps)
        return out.reshape(theta.shape[0], h, w, 2)

    def grids(
        self,
        size: tuple[int, int],
        kp_driving: torch.Tensor,
        kp_source: torch.Tensor,
        like: torch.Tensor,
    ) -> torch.Tensor:
        """(B, N (+1), h, w, 2) sampling grids, locals first, then the global one.

        Grid k holds T_k(p) at the dense-motion grid's pixel centres p (``make_coordinate_grid``,
        as the background and TPS grids), so that ``grid_sample(source, grid)`` moves the source
        to the driving pose. Keypoints are (B, N * 5, 2). Gradients reach the keypoints only with
        ``keypoint_gradient`` (through the fast fit's implicit-function derivative).
        """
        bs = kp_driving.shape[0]
        groups = (bs * self.num_cpab, POINTS_PER_TPS, 2)
        grad = torch.is_grad_enabled() and self.keypoint_gradient
        # The fit and the integration are float64 by design: never under mixed precision.
        with torch.autocast(like.device.type, enabled=False), torch.set_grad_enabled(grad):
            theta = self.fit(
                self.local, kp_driving.reshape(groups), kp_source.reshape(groups), False
            )
            grids = [self._grid(self.local, theta, size, like).view(bs, self.num_cpab, *size, 2)]
            if self.global_ is not None:
                theta_g = self.fit(self.global_, kp_driving, kp_source, True)
                grids.append(self._grid(self.global_, theta_g, size, like).unsqueeze(1))
        return torch.cat(grids, dim=1)


@register_method("cpab")
class CPABModel(TPSMM):
    """TPSMM's keypoint head, background predictor, dense-motion and inpainting networks with
    CPAB transforms in place of the TPS ones, plus the optional SAM and DINO losses.

    ``with_losses=False`` builds no loss module (no weights files needed). ``pretrained_losses``
    (tests only) builds the SAM/DINO loss networks at random initialisation instead of loading
    their weights files. Motion descriptors, schedules, clipping, relative motion, AVD encoding
    and generation are TPSMM's (inherited).
    """

    groups_key = "num_cpab"

    def __init__(
        self,
        config: dict[str, Any],
        weights_dir: str | Path = DEFAULT_WEIGHTS_DIR,
        with_losses: bool = True,
        pretrained_losses: bool = True,
    ) -> None:
        motion = CPABMotion(
            int(config["model_params"]["common_params"]["num_cpab"]),
            dict(config["model_params"]["cpab_params"]),
        )
        super().__init__(config, weights_dir, with_losses, num_transforms=motion.num_transforms)
        self.motion = motion
        self.keypoint_semantic: nn.Module | None = None
        self.structure: nn.Module | None = None
        if not with_losses:
            return
        # Lazy imports: SAM and DINO (segment-anything, timm) are only needed when weighted.
        if float(self.loss_weights["keypoint_semantic"]) != 0:
            from methods.losses.keypoint_semantic import KeypointSemanticLoss

            self.keypoint_semantic = KeypointSemanticLoss(
                weights_dir=weights_dir,
                pretrained=pretrained_losses,
                **self.train_params["keypoint_semantic_params"],
            )
        if float(self.loss_weights["structure"]) != 0:
            from methods.losses.structure import StructureLoss

            self.structure = StructureLoss(
                weights_dir=weights_dir,
                pretrained=pretrained_losses,
                **self.train_params["structure_params"],
            )

    # ------------------------------------------------------------------ motion and losses

    def _dense_motion(
        self,
        source: torch.Tensor,
        motion_source: Motion,
        motion_driving: Motion,
        bg_param: torch.Tensor | None,
    ) -> dict:
        net = self.dense_motion_network
        size = (int(source.shape[2]), int(source.shape[3]))
        if net.scale_factor != 1:
            # the size the network's anti-aliased downsampling (a padded strided conv) produces
            size = tuple(-(-n // net.down.stride) for n in size)
        grids = self.motion.grids(size, motion_driving["fg_kp"], motion_source["fg_kp"], source)
        return net(
            source,
            kp_driving=motion_driving,
            kp_source=motion_source,
            bg_param=bg_param,
            dropout_p=self.dropout_p,
            foreground_grids=grids,
            generator=self.rng,
        )

    def forward(
        self, source: torch.Tensor, driving: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        losses, generated = super().forward(source, driving)
        if self.keypoint_semantic is not None:
            losses["keypoint_semantic"] = float(
                self.loss_weights["keypoint_semantic"]
            ) * self.keypoint_semantic(
                source, driving, generated["kp_source"], generated["kp_driving"]
            )
        if self.structure is not None:
            losses["structure"] = float(self.loss_weights["structure"]) * self.structure(
                generated["prediction"], driving
            )
        return losses, generated
