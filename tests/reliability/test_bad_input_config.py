"""Config fuzzing: random YAML mappings, ``--set`` overrides and bytes through ``load_config``.

Every config class is loaded from mappings whose keys are its own fields (and strangers: typos,
numbers, null) and whose values have random types. The only error allowed is ``ConfigError`` naming
a key of the mapping; a config that loads has only finite floats.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyreward.config import ConfigError, load_config
from polyreward.gym.config import GymConfig
from polyreward.lm.config import TrainConfig
from polyreward.rm.config import RMConfig

CLASSES = [TrainConfig, GymConfig, RMConfig]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1e-3", "2e-5", "nan", "inf", "-inf", "", "gdpo", "token-mean", "float32", "raise", "mlp"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def keys_of(cls) -> st.SearchStrategy:
    fields = [f.name for f in dataclasses.fields(cls)]
    return st.one_of(
        st.sampled_from(fields),
        st.sampled_from(fields).map(lambda k: k[:-1] + "x"),  # a typo
        st.text(max_size=8),
        st.integers(-3, 3),
        st.none(),
        st.booleans(),
    )


def _load(cls, text: str, overrides: list[str] | None = None):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text)
        return load_config(cls, path, overrides)


def _check(cls, mapping: dict, loaded_or_error) -> None:
    if isinstance(loaded_or_error, ConfigError):
        message = str(loaded_or_error)
        named = [k for k in mapping if repr(k) in message or (str(k) and str(k) in message)]
        assert named, f"{cls.__name__}: error names no key of {list(mapping)}: {message}"
        return
    for f in dataclasses.fields(cls):
        value = getattr(loaded_or_error, f.name)
        if isinstance(value, float):
            assert math.isfinite(value), f"{cls.__name__}.{f.name} loaded as {value}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@FUZZ
@given(data=st.data())
def test_random_mappings_load_or_raise_a_config_error_naming_a_key(cls, data):
    mapping = data.draw(st.dictionaries(keys_of(cls), values, min_size=1, max_size=4))
    try:
        outcome = _load(cls, yaml.safe_dump(mapping))
    except ConfigError as err:
        outcome = err
    _check(cls, mapping, outcome)


@FUZZ
@given(
    settings_=st.lists(
        st.tuples(st.sampled_from(["steps", "learning_rate", "estimator", "rewards", "nope"]), st.text(max_size=10)),
        min_size=1,
        max_size=3,
    )
)
def test_set_overrides_raise_only_config_errors(settings_):
    overrides = [f"{key}={raw}" for key, raw in settings_]
    try:
        _load(TrainConfig, "steps: 3\n", overrides)
    except ConfigError as err:
        assert any(key in str(err) for key, _ in settings_), str(err)


@settings(max_examples=30, deadline=None)
@given(raw=st.binary(max_size=40))
def test_any_bytes_as_a_config_file_raise_only_config_errors(raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(raw)
        try:
            load_config(TrainConfig, path)
        except ConfigError as err:
            assert str(path) in str(err)


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("1: 2\n", None, r"unknown key 1"),  # a non-string key
        ("null: 2\n", None, r"unknown key None"),
        ("learning_rate: .nan\n", None, r"learning_rate: expected a finite number, got nan"),
        ("kl_coef: .inf\n", None, r"kl_coef: expected a finite number, got inf"),
        ("temperature: nan\n", None, r"temperature: expected a finite number, got 'nan'"),
        ("steps: 3\n", ["steps=[1"], r"--set 'steps=\[1': not valid YAML"),
        ("\xff\xfe: 1\n", None, r"not valid UTF-8"),
    ],
    ids=["int-key", "null-key", "nan", "inf", "nan-string", "set-bad-yaml", "bytes"],
)
def test_regressions_found_by_the_fuzzer(text, overrides, message):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(ConfigError, match=message):
            load_config(TrainConfig, path, overrides)
