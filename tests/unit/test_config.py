import pytest

from polyreward.config import ConfigError, load_config
from polyreward.lm.config import TrainConfig


def test_defaults_file_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("estimator: grpo\nsteps: 5\nestimator_params: {scale: batch}\nrewards: []\n")
    config = load_config(TrainConfig, path, ["learning_rate=2e-5", "dynamic_sampling=true", "top_p=0.9"])
    assert (config.estimator, config.steps, config.estimator_params) == ("grpo", 5, {"scale": "batch"})
    assert config.learning_rate == 2e-5 and config.dynamic_sampling is True and config.top_p == 0.9
    assert load_config(TrainConfig).model == "smollm2-135m"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["stepz=3"], "unknown key 'stepz'; did you mean \\['steps'\\]"),
        (["loss_reduction=mean"], "loss_reduction='mean' is not one of \\['token-mean'"),
        (["dtype=fp16"], "dtype='fp16' is not one of \\['float32', 'bfloat16'\\]"),
        (["steps=many"], "steps: expected int, got 'many'"),
        (["steps=0"], "steps: must be >= 1"),
        (["dynamic_sampling=1"], "dynamic_sampling: expected true or false"),
        (["estimator=gpdo"], "estimator: 'gpdo' is not registered"),
        (["estimator_params={scal: batch}"], "not parameters of 'gdpo'"),
        (["top_p=1.5"], "top_p: must be in \\(0, 1\\]"),
        (["steps"], "expected key=value"),
    ],
)
def test_bad_keys_and_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping"):
        load_config(TrainConfig, bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(TrainConfig, broken)
