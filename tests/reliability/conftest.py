"""Shared fixtures of the reliability tests: the tiny random Llama of tests/e2e, built once."""

from __future__ import annotations

import pytest

from tests.e2e.tiny_lm import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
