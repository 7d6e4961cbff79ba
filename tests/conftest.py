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
    # everything the tests write goes to a temporary folder, the music21 -> MIDI cache included:
    # the tests never write into the repository's data/
    return Config.from_profile("tiny", runs_dir=str(session_tmp / "runs"), corpus_dir=str(session_tmp / "corpus"),
                               music21_cache_dir=str(session_tmp / "music21_midi"), reward_backend="standin")


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


def put_in_hf_cache(cache: Path, repo_id: str, save) -> Path:
    """Place a repo in a Hugging Face hub cache the way huggingface_hub lays it out:
    models--<owner>--<name>/snapshots/<revision>/ holding the files, refs/main naming the revision.
    `save(folder)` writes the files (a library's own save_pretrained)."""
    import hashlib

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex commit id
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    save(snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


@pytest.fixture(scope="session")
def paper_hub_cache(tmp_path_factory) -> Path:
    """A Hugging Face cache holding both paper assets under their real ids, in their hubs' layouts,
    with random weights: a paper-shaped Phi-3 (4 layers, 512 wide, save_pretrained) for
    lucacasini/metamidipianophi3_4L and the real Audiobox architecture (its own save_pretrained:
    config.json + model.safetensors) for facebook/audiobox-aesthetics. About 30 s to build."""
    from smart_core.assets import AUDIOBOX_ID, BASE_MODEL_ID
    from smart_core.model import build_model
    from smart_core.reward import make_random_audiobox_repo

    cache = tmp_path_factory.mktemp("hf") / "hub"
    put_in_hf_cache(cache, BASE_MODEL_ID, lambda d: build_model(Config.from_profile("paper")).save_pretrained(d))
    put_in_hf_cache(cache, AUDIOBOX_ID, make_random_audiobox_repo)
    return cache


@pytest.fixture()
def offline_hub(monkeypatch, paper_hub_cache) -> Path:
    """The paper cache as this test's HF cache, offline (as on a machine without a network)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(paper_hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SMART_AUDIOBOX_CKPT", raising=False)
    monkeypatch.delenv("SMART_BASE_MODEL", raising=False)
    return paper_hub_cache


@pytest.fixture(scope="session")
def tiny_trained(tiny_cfg, tiny_base_model, session_tmp) -> dict:
    """The tiny 'smart' run through smart_core.stages.training_stage (4 GRPO steps, base and tuned
    evaluations, diversity sweep; stand-in reward), once per session, in its own runs folder: the
    pipeline test and the run tests train in tiny_cfg.runs_dir. The base model is tiny_base_model
    (base_model= points at it, so nothing is pre-trained again). Its result dict (run, base_eval,
    tuned_eval, sweep, overlap) plus "cfg", the config it ran with."""
    from smart_core.stages import training_stage

    cfg = tiny_cfg.replace(runs_dir=str(session_tmp / "analysis_runs"), base_model=str(tiny_base_model))
    return {**training_stage(cfg, "smart", progress=False), "cfg": cfg}
