"""methods.base.AnimationModel: the one interface the trainer, reconstruction and animation use.

Its abstract methods say so when a method lacks them, its hooks do nothing by default, and the
sub-networks named in ``checkpoint_keys`` are what a checkpoint holds and loads strictly; every
registered method keeps that contract.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from methods.base import AnimationModel, Motion
from methods.engine.checkpoints import CheckpointError, load_model_state, model_state
from methods.registry import build_model
from tests.conftest import REPO, TINY_FOMM

pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(AnimationModel):
    """The smallest complete method: a 'keypoint' per image and a brightness-shift generator."""

    checkpoint_keys = ("generator", "kp_detector")

    def __init__(self, config):
        super().__init__(config)
        self.kp_detector = nn.Linear(3, 2)
        self.generator = nn.Conv2d(3, 3, 1)
        self.scratch = nn.Linear(1, 1)  # not a sub-network of the checkpoints

    def optimizer_groups(self):
        return {"generator": list(self.generator.parameters()),
                "kp_detector": list(self.kp_detector.parameters())}

    def encode(self, image):
        return {"value": self.kp_detector(image.mean(dim=(2, 3)))}

    def generate(self, source, motion_source, motion_driving):
        shift = (motion_driving["value"] - motion_source["value"]).mean(1)[:, None, None, None]
        return {"prediction": torch.sigmoid(self.generator(source) + shift)}


ABSTRACT = [
    ("optimizer_groups", ()),
    ("encode", (torch.zeros(1, 3, 4, 4),)),
    ("generate", (torch.zeros(1, 3, 4, 4), {}, {})),
    ("forward", (torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))),
    ("relative_motion", ({}, {}, {})),
    ("avd_encode", ({},)),
    ("avd_decode", (torch.zeros(1, 2), {})),
]


@pytest.mark.parametrize("name, args", ABSTRACT, ids=[a[0] for a in ABSTRACT])
def test_the_interface_methods_raise_until_a_method_implements_them(name, args):
    model = AnimationModel({"method": "none"})
    with pytest.raises(NotImplementedError):
        getattr(model, name)(*args)


def test_hooks_do_nothing_by_default_and_the_config_is_kept():
    config = {"method": "toy", "train_params": {"lr_generator": 1e-3}}
    model = AnimationModel(config)
    assert isinstance(model, nn.Module) and model.config is config
    assert model.checkpoint_keys == () and list(model.parameters()) == []
    assert model.before_optimizer_step() is None and model.set_epoch(3) is None
    assert Motion == dict[str, torch.Tensor]


def test_a_method_implementing_the_interface_renders_a_prediction():
    torch.manual_seed(0)
    model = Toy({"method": "toy"})
    source, driving = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    out = model.generate(source, model.encode(source), model.encode(driving))
    prediction = out["prediction"].detach()
    assert prediction.shape == source.shape and 0 <= prediction.min() and prediction.max() <= 1
    # The interface methods it did not implement still say so.
    with pytest.raises(NotImplementedError):
        model.avd_encode(model.encode(source))


def test_checkpoint_keys_name_what_a_checkpoint_holds_and_it_loads_strictly():
    torch.manual_seed(0)
    model = Toy({"method": "toy"})
    state = model_state(model)
    assert list(state) == ["generator", "kp_detector"]  # the scratch module is not saved
    torch.manual_seed(1)
    other = Toy({"method": "toy"})
    load_model_state(other, copy.deepcopy(state))
    for key in Toy.checkpoint_keys:
        for a, b in zip(getattr(model, key).parameters(), getattr(other, key).parameters(), strict=True):
            assert torch.equal(a, b)
    # A sub-network of another shape, or a missing one, is refused rather than half-loaded.
    state["kp_detector"] = nn.Linear(3, 5).state_dict()
    with pytest.raises(CheckpointError, match="kp_detector does not match"):
        load_model_state(other, state)
    with pytest.raises(CheckpointError, match=r"lacks \['generator'\]"):
        load_model_state(other, {"kp_detector": model.kp_detector.state_dict()})


def _tiny_configs():
    from methods.engine.config import load_method_config
    from tests.test_mraa import tiny_config as tiny_mraa
    from tests.test_tpsmm import tiny_config as tiny_tpsmm

    fomm = load_method_config(REPO / "methods/configs/fomm/synthetic.yaml", overrides=TINY_FOMM)
    return {"fomm": fomm, "mraa": tiny_mraa(), "tpsmm": tiny_tpsmm()}


@pytest.mark.parametrize("method", ["fomm", "mraa", "tpsmm"])
def test_every_registered_method_keeps_the_contract(method):
    config = _tiny_configs()[method]
    torch.manual_seed(0)
    model = build_model(config, with_losses=False)
    assert isinstance(model, AnimationModel) and model.config["method"] == method
    assert model.checkpoint_keys, "a method saves at least one sub-network"
    for key in model.checkpoint_keys:
        assert isinstance(getattr(model, key), nn.Module), key
    # Every parameter an optimizer steps belongs to a sub-network the checkpoint saves.
    saved = {id(p) for key in model.checkpoint_keys for p in getattr(model, key).parameters()}
    stepped = [p for params in model.optimizer_groups().values() for p in params]
    assert stepped and {id(p) for p in stepped} <= saved
    assert len({id(p) for p in stepped}) == len(stepped)  # no parameter stepped twice
    # encode -> generate renders a prediction of the source's shape.
    model.eval()
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        motion = model.encode(image)
        out = model.generate(image, motion, motion)
    assert out["prediction"].shape == image.shape
