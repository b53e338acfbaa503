"""Stand-ins of the authors' released checkpoints, for offline tests.

A stand-in has the release's exact layout: the full-size architecture of the release's config
(random weights), plus the entries the release carries that we do not use (FOMM's discriminator,
in the reference's key names and shapes pinned in tests/data; the optimizers; the epoch) and,
for MRAA and TPSMM, the AVD network. FOMM's releases were written by torch 1.0, in the legacy
(non-zip) serialisation; the stand-ins of FOMM use it too.

:func:`register_standin` registers a copy of a release under a test name, with no published
digest (the stand-in's bytes are not the release's), so it resolves like a release whose digest
is not yet locked.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from data_prep import weights
from methods.engine.checkpoints import model_state
from methods.engine.releases import RELEASES, Release, release_method_config
from methods.models.avd import build_avd_network
from methods.registry import build_model

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
#: The reference discriminator config of each FOMM release's dataset (pinned layouts).
FOMM_DISCRIMINATOR = {"vox": "vox-adv-256", "taichi": "taichi-adv-256", "mgif": "mgif-256"}


def _random_state(layout: list[list]) -> dict[str, torch.Tensor]:
    state = {}
    for key, shape in layout:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.long)
        else:
            state[key] = torch.rand(shape) + (0.5 if key.endswith("running_var") else 0.0)
    return state


def _optimizer_state(count: int) -> dict:
    # Adam's state_dict as torch writes it (empty moments keep the file small).
    return {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "eps": 1e-8, "weight_decay": 0,
                                           "amsgrad": False, "params": list(range(count))}]}


def standin_payload(release: Release, seed: int = 0) -> dict:
    """The release's checkpoint dict with random weights."""
    config = release_method_config(release.name, REPO)
    torch.manual_seed(seed)
    model = build_model(config, with_losses=False)
    payload = model_state(model)
    for extra in release.extra_entries:
        if extra == "discriminator":
            layouts = json.loads((DATA / "fomm_discriminator_state_dict.json").read_text())
            payload[extra] = _random_state(layouts[FOMM_DISCRIMINATOR[release.dataset]])
        elif extra.startswith("optimizer"):
            payload[extra] = _optimizer_state(8)
        else:  # epoch, epoch_avd
            payload[extra] = 99
    if release.has_avd:
        payload["avd_network"] = build_avd_network(model).state_dict()
    return payload


def write_standin(name: str, folder: Path, seed: int = 0, release: Release | None = None) -> Path:
    """Write the stand-in of release ``name`` as ``folder/<its file name>``."""
    release = release or RELEASES[name]
    path = Path(folder) / weights.REGISTRY[release.name].filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(standin_payload(release, seed), path, _use_new_zipfile_serialization=release.method != "fomm")
    return path


def register_standin(monkeypatch: pytest.MonkeyPatch, name: str) -> Release:
    """Register release ``name`` again as ``standin_<name>``, with no published digest."""
    release = dataclasses.replace(RELEASES[name], name=f"standin_{name}")
    file = dataclasses.replace(weights.REGISTRY[name], name=release.name, sha256_prefix="", size=None,
                               filename=f"standin-{weights.REGISTRY[name].filename}")
    monkeypatch.setitem(RELEASES, release.name, release)
    monkeypatch.setitem(weights.REGISTRY, release.name, file)
    return release
