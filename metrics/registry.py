"""Evaluation protocols: which metrics (and later which keypoint / identity backends) a dataset uses.

A protocol maps a name (from the workflow config) to the list of per-frame metric columns it
produces and the function that computes them for one video. L1 is computed for every protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from metrics.l1 import l1_per_frame

#: (prediction, ground truth) uint8 videos (T, H, W, 3) -> {column: (T,) values}
FrameMetric = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Protocol:
    name: str
    metrics: dict[str, FrameMetric] = field(default_factory=dict)
    #: Backend name and version per metric, recorded next to every number in the reports.
    backends: dict[str, str] = field(default_factory=dict)


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    PROTOCOLS[protocol.name] = protocol
    return protocol


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise KeyError(f"unknown evaluation protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def _l1(prediction: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    return {"l1": l1_per_frame(prediction, target)}


# AKD/MKR/AED evaluators (synthetic ground truth, face-alignment, openpifpaf, facenet, torchreid)
# are added to these protocols as they land; until then every protocol measures L1 only.
register_protocol(Protocol("synthetic", {"l1": _l1}, {"l1": "numpy"}))
register_protocol(Protocol("l1", {"l1": _l1}, {"l1": "numpy"}))
