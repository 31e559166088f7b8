"""What serve and generate check before loading: the model can be found, the device exists."""

from __future__ import annotations

import pytest
from huggingface_hub import constants

from pixeldrop.errors import InvalidInput
from pixeldrop.generation.preflight import check_device, check_model


def test_a_model_folder_needs_a_pipeline_index(tmp_path, tiny_model):
    check_model(tiny_model)
    with pytest.raises(InvalidInput, match="no model_index.json"):
        check_model(str(tmp_path))
    with pytest.raises(InvalidInput, match="no such folder"):
        check_model(str(tmp_path / "missing"))  # an absolute path can be no hub id either


def test_a_hub_id_is_found_in_the_local_cache_without_the_network(tmp_path, monkeypatch):
    snapshot = tmp_path / "models--nobody--cached" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (tmp_path / "models--nobody--cached" / "refs").mkdir()
    (tmp_path / "models--nobody--cached" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    check_model("nobody/cached")
    with pytest.raises(InvalidInput, match="HF_HUB_OFFLINE"):
        check_model("nobody/not-cached")


def test_a_device_must_be_one_torch_names_and_this_machine_has():
    check_device("auto")
    check_device("cpu")
    with pytest.raises(InvalidInput, match="not a device"):
        check_device("gpu")
    with pytest.raises(InvalidInput, match="no cuda:64 device"):
        check_device("cuda:64")
