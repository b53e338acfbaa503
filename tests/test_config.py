"""Method config validation: the shared schema plus each method's own schema file."""

from __future__ import annotations

import pytest

from methods.engine.config import (
    MethodConfigError,
    known_methods,
    load_method_config,
    validate_method_config,
)


def test_every_method_config_validates():
    from methods.engine.config import CONFIG_DIR

    for method in known_methods():
        for path in sorted((CONFIG_DIR / method).glob("*.yaml")):
            if path.name != "schema.yaml":
                load_method_config(path)


def test_unknown_method_names_the_known_ones():
    config = load_method_config("methods/configs/fomm/synthetic.yaml")
    config["method"] = "nope"
    with pytest.raises(MethodConfigError, match="unknown method 'nope'; known: .*fomm"):
        validate_method_config(config, "x.yaml")


def test_method_schema_rejects_misspelt_key():
    with pytest.raises(MethodConfigError, match="train_params.*num_epoch"):
        load_method_config(
            "methods/configs/fomm/synthetic.yaml", overrides={"train_params.num_epoch": 1}
        )
