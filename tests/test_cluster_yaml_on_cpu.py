"""cluster.yaml passes Ray's own cluster-launcher validation (the checks `ray up` makes first)."""

from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_cluster_yaml_is_valid_for_ray_up():
    config = yaml.safe_load(CLUSTER.read_text())
    validate_config(prepare_config(config))  # what `ray up` runs before touching a cloud
    assert any("rlhf[gpu]" in cmd for cmd in config["setup_commands"])
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] >= 1 and config["head_node_type"] == "head"


def test_validation_catches_a_typo():
    config = yaml.safe_load(CLUSTER.read_text())
    config["available_node_types"]["gpu_worker"]["max_wrokers"] = 8
    with pytest.raises(jsonschema.ValidationError, match="max_wrokers"):
        validate_config(prepare_config(config))
