import json
from pathlib import Path

import pytest

from cb_assets.shared.dataset import DatasetError, Pair, PairKeyError, load_pairs, parse_pair_key


def test_lite_subset_has_100_pairs_over_26_tasks_and_12_repos(lite_dataset: Path) -> None:
    pairs = load_pairs(lite_dataset, "lite")
    assert len(pairs) == 100
    assert len({(p.repo, p.task_id) for p in pairs}) == 26
    assert len({p.repo for p in pairs}) == 12
    assert all(p.feature_a < p.feature_b for p in pairs)


def test_flash_subset_loads(lite_dataset: Path) -> None:
    assert len(load_pairs(lite_dataset, "flash")) == 50


def test_image_name_follows_upstream() -> None:
    assert Pair("dspy_task", 8394, 3, 4).image() == "akhatua/cooperbench-dspy:task8394"
    assert (
        Pair("huggingface_datasets_task", 3997, 1, 2).image("local")
        == "local/cooperbench-huggingface-datasets:task3997"
    )


def test_pair_key_round_trips() -> None:
    pair = Pair("dottxt_ai_outlines_task", 1655, 6, 7)
    assert pair.key == "dottxt_ai_outlines_task-1655-f6_f7"
    assert parse_pair_key(pair.key) == pair


@pytest.mark.parametrize("key", ["", "dspy_task-8394", "dspy_task-x-f1_f2", "a|b", "dspy-1-f1"])
def test_bad_pair_key_names_the_key(key: str) -> None:
    with pytest.raises(PairKeyError, match="invalid pair key"):
        parse_pair_key(key)


def test_missing_dataset_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_pairs(tmp_path / "nowhere", "lite")
    message = str(err.value)
    assert "cooperbench prepare" in message and "CB_DATASET_DIR" in message
    assert str(tmp_path / "nowhere") in message
    assert "\n" not in message


def test_unknown_subset_lists_known_ones(lite_dataset: Path) -> None:
    with pytest.raises(DatasetError, match=r"subset 'huge' not found.*flash, lite"):
        load_pairs(lite_dataset, "huge")


def test_malformed_subset_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "subsets").mkdir()
    bad = tmp_path / "subsets" / "lite.json"
    bad.write_text('{"tasks": [{"repo": "x"')
    with pytest.raises(DatasetError, match="malformed subset file") as err:
        load_pairs(tmp_path, "lite")
    assert str(bad) in str(err.value)


def test_missing_feature_spec_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "subsets").mkdir()
    spec = {"tasks": [{"repo": "r_task", "task_id": 1, "pairs": [[1, 2]]}]}
    (tmp_path / "subsets" / "lite.json").write_text(json.dumps(spec))
    with pytest.raises(DatasetError, match="feature1/feature.md is missing"):
        load_pairs(tmp_path, "lite")
