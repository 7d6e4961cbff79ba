"""Shared fixtures: real MIDI files, the tiny profile in a temporary folder, one tiny base model."""

from pathlib import Path

import pytest

from smart_core.config import Config

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smart")


@pytest.fixture(scope="session")
def tiny_cfg(session_tmp) -> Config:
    # the music21 -> MIDI cache stays in the repo's data/ (shared with make reproduce); the built
    # corpus, models and runs go to a temporary folder
    return Config.from_profile("tiny", runs_dir=str(session_tmp / "runs"), corpus_dir=str(session_tmp / "corpus"),
                               reward_backend="standin")


@pytest.fixture(scope="session")
def tiny_corpus(tiny_cfg):
    from smart_core.data import build_corpus

    return build_corpus(tiny_cfg)


@pytest.fixture(scope="session")
def tiny_base_model(tiny_cfg, tiny_corpus) -> Path:
    """A tiny Phi3 pre-trained on the tiny corpus (a few seconds); its folder."""
    from smart_core.model import get_base_model

    get_base_model(tiny_cfg, tiny_corpus, progress=False)
    return tiny_cfg.base_model_dir
