import shutil

import pytest

from smart_core.config import Config
from smart_core.data import BadMidi, assign_splits, build_corpus, load_piano_midi


@pytest.mark.parametrize("name,reason", [("corrupted", "unparseable"), ("not_midi", "unparseable"),
                                         ("empty", "empty_file"), ("no_notes", "no_notes"),
                                         ("drums_only", "drums_only")])
def test_bad_files_raise_with_a_reason(fixtures, name, reason):
    with pytest.raises(BadMidi) as err:
        load_piano_midi(fixtures / f"{name}.mid")
    assert err.value.reason == reason


def test_tracks_are_merged_into_one_piano_track(fixtures):
    score = load_piano_midi(fixtures / "two_tracks_tempo_change.mid")
    assert len(score.tracks) == 1 and score.tracks[0].program == 0
    assert len(score.tracks[0].notes) == 32 + 24
    assert len(score.tempos) == 2


def test_splits_are_deterministic_by_piece_and_never_empty():
    names = [f"piece{i}" for i in range(20)]
    a = assign_splits(names, 0.1, 0.1)
    assert a == assign_splits(list(reversed(names)), 0.1, 0.1)
    assert {s for s in a.values()} == {"train", "val", "test"}
    assert sum(s == "test" for s in a.values()) == 2


def test_folder_corpus_skips_bad_files_and_reports_them(fixtures, tmp_path):
    folder = tmp_path / "midi"
    (folder / "sub").mkdir(parents=True)
    for f in fixtures.glob("*.mid"):
        shutil.copy(f, folder / "sub" / f.name)
    cfg = Config.from_profile("tiny", corpus_source=str(folder), corpus_dir=str(tmp_path / "corpus"))
    corpus = build_corpus(cfg)
    reasons = corpus.skipped["reason"].value_counts().to_dict()
    assert reasons == {"unparseable": 2, "empty_file": 1, "no_notes": 1, "drums_only": 1}
    summary = corpus.summary
    assert summary.loc["total", "pieces"] == 4
    assert list(summary.columns) == ["pieces", "notes", "hours", "tokens"]
    assert sum(len(corpus.paths(s)) for s in ("train", "val", "test")) == 4
    tokens = corpus.tokens("train") + corpus.tokens("val") + corpus.tokens("test")
    assert sum(len(t) for t in tokens) == summary.loc["total", "tokens"]


def test_missing_folder_is_a_clear_error(tmp_path):
    cfg = Config.from_profile("tiny", corpus_source=str(tmp_path / "nope"), corpus_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        build_corpus(cfg)


def test_music21_corpus_builds_real_music(tiny_corpus):
    summary = tiny_corpus.summary
    assert summary.loc["train", "pieces"] >= 10 and summary.loc["val", "pieces"] >= 1 and summary.loc["test", "pieces"] >= 1
    assert summary.loc["total", "notes"] > 3000


def test_structure_check_rejects_truncation_before_parsing(fixtures):
    from smart_core.data import check_midi_structure

    good = (fixtures / "c_major_scale.mid").read_bytes()
    check_midi_structure(good)  # a whole file passes
    for bad in (good[:-1], good[:20], b"MThd", (fixtures / "corrupted.mid").read_bytes()):
        with pytest.raises(BadMidi, match="unparseable"):
            check_midi_structure(bad)
