"""Resuming refuses a config that changed in anything but the run length, output place and threads."""

from pathlib import Path

import pytest

from polyreward.checkpoint import check_resumed_config


def test_resume_allows_length_and_place_and_names_other_changes():
    then = {"steps": 10, "output_dir": "a", "save_every": 5, "threads": 1, "estimator": "gdpo", "seed": 0}
    check_resumed_config(Path("ck"), {**then, "steps": 40, "output_dir": "b", "save_every": 0, "threads": 2}, then)
    with pytest.raises(ValueError, match=r"ck: config differs .*\{'estimator': \('grpo', 'gdpo'\)\}"):
        check_resumed_config(Path("ck"), {**then, "estimator": "grpo"}, then)
