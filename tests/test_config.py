"""The config schema names the bad key before any job runs."""

import copy
from pathlib import Path

import pytest
import yaml

from sherlock.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def _merge(base, over):
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def test_default_and_presets_are_valid(config):
    validate_config(config, SCHEMA)
    for preset in sorted((ROOT / "config" / "presets").glob("*.yaml")):
        merged = _merge(copy.deepcopy(config), yaml.safe_load(preset.read_text()))
        validate_config(merged, SCHEMA)


def test_typo_names_the_key(config):
    config["sft"]["r0"]["lerning_rate"] = 1e-3
    with pytest.raises(ConfigError, match=r"sft\.r0\.lerning_rate: unknown key"):
        validate_config(config, SCHEMA)


def test_wrong_type_names_the_key(config):
    config["splits"]["d_a"] = "many"
    with pytest.raises(ConfigError, match=r"splits\.d_a: 'many' is not of type 'integer'"):
        validate_config(config, SCHEMA)


def test_cross_field_rules(config):
    config["source"]["format"] = "llava_cot"
    with pytest.raises(ConfigError, match=r"source\.path: required"):
        validate_config(config, SCHEMA)
