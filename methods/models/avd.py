"""Animation via disentanglement (AVD; Siarohin et al., CVPR 2021, Sec. 3.4).

An identity encoder sees the source's motion parameters, a pose encoder the driving frame's;
a decoder maps the two codes back to motion parameters that keep the source's shape and take
the driving frame's pose. MRAA trains it after the motion model, on frame pairs of one video
whose driving parameters are randomly rescaled, so that the pose code cannot carry shape.

The network works on the flat vector ``model.avd_encode(motion)`` (B, D) of any method; the
method maps it back with ``model.avd_decode``. Module and parameter names follow the released
MRAA and TPSMM checkpoints' ``avd_network`` entry (``id_encoder``, ``pose_encoder``,
``decoder``, each an ``nn.Sequential`` of Linear/BatchNorm1d/ReLU), so those load strictly; the
sizes are read back from a state_dict, so no config is needed to load one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from methods.base import AnimationModel, Motion

#: Hidden widths of the encoders; the decoder uses them in reverse (reference layout).
HIDDEN = (256, 512, 1024)
#: Bottleneck sizes when the method config has no ``model_params.avd_network_params``
#: (MRAA's configs use 64; TPSMM's 128).
DEFAULT_BOTTLENECK = 64

#: Motion entries that are points, (B, N, 2), and entries that are 2x2 linear maps,
#: (B, N, 2, 2), in the methods' motion dicts: FOMM value/jacobian, MRAA shift/affine,
#: TPSMM/CPAB fg_kp. ``random_scale`` rescales exactly these.
POINT_KEYS = ("value", "shift", "fg_kp")
LINEAR_KEYS = ("jacobian", "affine")


def _mlp(sizes: list[int], inplace: bool) -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU for every hidden layer, a bare Linear at the end."""
    layers: list[nn.Module] = []
    for i, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(width_out), nn.ReLU(inplace=inplace)]
    return nn.Sequential(*layers)


class AVDNetwork(nn.Module):
    """Identity and pose encoders plus a decoder over flat motion parameters of size ``input_size``."""

    def __init__(self, input_size: int, id_bottle_size: int = DEFAULT_BOTTLENECK,
                 pose_bottle_size: int = DEFAULT_BOTTLENECK) -> None:
        super().__init__()
        self.input_size = input_size
        self.id_bottle_size = id_bottle_size
        self.pose_bottle_size = pose_bottle_size
        # The reference encoders use in-place ReLUs and the decoder plain ones: no effect on
        # parameters or outputs, kept only so module reprs read the same.
        self.id_encoder = _mlp([input_size, *HIDDEN, id_bottle_size], inplace=True)
        self.pose_encoder = _mlp([input_size, *HIDDEN, pose_bottle_size], inplace=True)
        self.decoder = _mlp([pose_bottle_size + id_bottle_size, *reversed(HIDDEN), input_size], inplace=False)

    def forward(self, identity: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Motion parameters (B, D) with the shape of ``identity`` and the pose of ``pose``."""
        for name, x in (("identity", identity), ("pose", pose)):
            if x.ndim != 2 or x.shape[1] != self.input_size:
                raise ValueError(f"AVD {name} parameters must be (B, {self.input_size}), got {tuple(x.shape)}")
        # Decoder input order is [pose, identity], as in the released weights.
        return self.decoder(torch.cat([self.pose_encoder(pose), self.id_encoder(identity)], dim=1))

    def sizes(self) -> dict[str, int]:
        return {"input_size": self.input_size, "id_bottle_size": self.id_bottle_size,
                "pose_bottle_size": self.pose_bottle_size}


def sizes_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """``AVDNetwork`` constructor arguments that produce ``state``'s shapes.

    Raises KeyError naming the entry when ``state`` is not an AVD state_dict.
    """
    last = 3 * len(HIDDEN)  # index of the final Linear in each encoder
    for key in ("id_encoder.0.weight", f"id_encoder.{last}.weight", f"pose_encoder.{last}.weight"):
        if key not in state:
            raise KeyError(f"avd_network state_dict has no {key!r}; keys start with {sorted(state)[:4]}")
    return {
        "input_size": int(state["id_encoder.0.weight"].shape[1]),
        "id_bottle_size": int(state[f"id_encoder.{last}.weight"].shape[0]),
        "pose_bottle_size": int(state[f"pose_encoder.{last}.weight"].shape[0]),
    }


def avd_input_size(model: AnimationModel) -> int:
    """Length D of ``model.avd_encode(model.encode(frame))``, found by encoding one blank frame.

    The network is put in eval mode for this and restored afterwards (no batch-norm update).
    """
    height, width, channels = model.config["dataset_params"]["frame_shape"]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            motion = model.encode(torch.zeros(1, channels, height, width, device=device))
            return int(model.avd_encode(motion).shape[1])
    finally:
        model.train(was_training)


def build_avd_network(model: AnimationModel, params: dict[str, Any] | None = None) -> AVDNetwork:
    """A fresh AVD network for ``model``; ``params`` defaults to ``model_params.avd_network_params``."""
    if params is None:
        params = model.config.get("model_params", {}).get("avd_network_params", {})
    return AVDNetwork(
        avd_input_size(model),
        id_bottle_size=int(params.get("id_bottle_size", DEFAULT_BOTTLENECK)),
        pose_bottle_size=int(params.get("pose_bottle_size", DEFAULT_BOTTLENECK)),
    )


def align_identity(model: AnimationModel, identity: Motion, pose: Motion) -> Motion:
    """The method's optional ``avd_align_identity(identity, pose)`` hook, else ``identity``.

    MRAA needs it: a PCA region's axes are defined up to sign, and its reference flips the
    source affine when ``A_id @ inv(A_pose)`` has a negative top-left entry (see
    :func:`revert_axis_swap`) before encoding.
    """
    hook = getattr(model, "avd_align_identity", None)
    return hook(identity, pose) if hook is not None else identity


def revert_axis_swap(identity: Motion, pose: Motion, key: str = "affine") -> Motion:
    """``identity`` with ``identity[key]`` multiplied by the sign of ``(A_id inv(A_pose))[0, 0]``
    per region: undoes a sign swap of PCA axes between the two frames (MRAA's AVD input)."""
    relative = identity[key] @ torch.linalg.inv(pose[key])
    sign = torch.sign(relative[..., 0:1, 0:1])
    return {**identity, key: identity[key] * sign}


def avd_transfer(model: AnimationModel, avd_network: AVDNetwork, motion_source: Motion,
                 motion_driving: Motion) -> Motion:
    """Animation's ``avd`` mode: the source's shape in the driving frame's pose, as a Motion."""
    identity = align_identity(model, motion_source, motion_driving)
    params = avd_network(model.avd_encode(identity), model.avd_encode(motion_driving))
    return model.avd_decode(params, like=motion_driving)


def random_scale(motion: Motion, scale: float, generator: torch.Generator | None = None) -> Motion:
    """``motion`` under a random axis-aligned scaling ``diag(sx, sy)``, ``s ~ U[1-scale, 1+scale]``
    per sample (the deformation MRAA's and TPSMM's AVD training applies to the pose input).

    Points (:data:`POINT_KEYS`) become ``S p``, linear maps (:data:`LINEAR_KEYS`) ``S A``;
    other entries are kept. Raises KeyError when ``motion`` has none of these keys.
    """
    if not any(k in motion for k in (*POINT_KEYS, *LINEAR_KEYS)):
        raise KeyError(f"random_scale: motion has none of {POINT_KEYS + LINEAR_KEYS}; it has {sorted(motion)}")
    first = next(motion[k] for k in (*POINT_KEYS, *LINEAR_KEYS) if k in motion)
    theta = torch.rand(first.shape[0], 2, generator=generator) * (2 * scale) + (1 - scale)
    theta = theta.to(device=first.device, dtype=first.dtype)
    out = dict(motion)
    for key in POINT_KEYS:
        if key in motion:
            # broadcast (B, 1, 2) over the N points: S p scales x by sx and y by sy.
            out[key] = motion[key] * theta[:, None, :]
    for key in LINEAR_KEYS:
        if key in motion:
            # S A scales the first row by sx and the second by sy.
            out[key] = motion[key] * theta[:, None, :, None]
    return out


def load_avd_network(state: dict[str, torch.Tensor], source: str = "checkpoint") -> AVDNetwork:
    """An :class:`AVDNetwork` sized from ``state`` and loaded strictly, in eval mode.

    Raises ValueError naming ``source`` and the missing or unexpected keys on a mismatch.
    """
    try:
        network = AVDNetwork(**sizes_from_state_dict(state))
        network.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{source}: avd_network does not load: {err}") from err
    return network.eval()
