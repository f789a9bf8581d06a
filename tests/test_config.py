"""Build configs: validated at load, with messages that name the bad key and the allowed ones."""

from __future__ import annotations

import pytest
import yaml

from medinjection.core.config import ConfigError, load_build_config


def write(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_is_named_with_the_allowed_ones(tmp_path):
    path = write(tmp_path, {"name": "x", "sources": [], "filters": {"language": {"treshold": 0.5}}})
    with pytest.raises(ConfigError) as err:
        load_build_config(path)
    assert "filters.language.treshold" in str(err.value)
    assert "threshold" in str(err.value) and str(path) in str(err.value)


def test_hub_sources_need_a_pinned_revision(tmp_path):
    path = write(
        tmp_path, {"name": "x", "sources": [{"adapter": "mediqal", "hub_id": "ANR-MALADES/MediQAl"}]}
    )
    with pytest.raises(ConfigError, match="pinned revision"):
        load_build_config(path)


def test_slurm_needs_its_section(tmp_path):
    path = write(tmp_path, {"name": "x", "sources": [], "executor": {"type": "slurm"}})
    with pytest.raises(ConfigError, match="partition"):
        load_build_config(path)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    config = load_build_config(
        write(tmp_path, {"name": "x", "sources": [{"adapter": "frenchmedmcqa", "path": "data"}]})
    )
    assert config.resolve("data") == tmp_path / "data"


def test_unknown_bundled_name_lists_the_bundled_ones():
    with pytest.raises(ConfigError, match="bundled"):
        load_build_config("no-such-config")


def test_a_branch_is_not_a_pinned_revision(tmp_path):
    path = write(
        tmp_path,
        {
            "name": "x",
            "sources": [{"adapter": "mediqal", "hub_id": "ANR-MALADES/MediQAl", "revision": "main"}],
        },
    )
    with pytest.raises(ConfigError, match="branch"):
        load_build_config(path)
