import importlib.metadata
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import symusic

from smart_core.config import Config
from smart_core.data import assign_splits, build_corpus, piece_names
from smart_core.midi import BadMidi, as_score, check_midi_structure, load_piano_midi
from smart_core.tokenizer import id_to_token, score_to_ids

REPO = Path(__file__).parent.parent


def write_piece(path: Path, pitches, tracks: int = 1, drums: bool = False) -> Path:
    """A real MIDI file: one quarter note per pitch, spread over `tracks` tracks (+ a drum track)."""
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    parts = [symusic.Track(name=f"part {k}", program=0) for k in range(tracks)]
    for i, pitch in enumerate(pitches):
        parts[i % tracks].notes.append(symusic.Note(i * 480, 480, pitch, 80))
    if drums:
        parts.append(symusic.Track(name="drums", program=0, is_drum=True))
        parts[-1].notes.append(symusic.Note(0, 240, 36, 100))
    for part in parts:
        score.tracks.append(part)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(path)
    return path


def folder_config(folder: Path, tmp_path: Path) -> Config:
    return Config.from_profile("tiny", corpus_source=str(folder), corpus_dir=str(tmp_path / "corpus"))


def scale(start: int) -> list[int]:
    return [start + step for step in (0, 2, 4, 5, 7, 9, 11, 12)]


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
    # unparseable: corrupted, not_midi and zero_tpq (which used to stop the whole build in miditok)
    assert reasons == {"unparseable": 3, "empty_file": 1, "no_notes": 1, "drums_only": 1}
    summary = corpus.summary
    assert summary.loc["total", "pieces"] == 4
    assert list(summary.columns) == ["pieces", "notes", "hours", "tokens", "pieces_with_dynamics"]
    assert sum(len(corpus.paths(s)) for s in ("train", "val", "test")) == 4
    tokens = corpus.tokens("train") + corpus.tokens("val") + corpus.tokens("test")
    assert sum(len(t) for t in tokens) == summary.loc["total", "tokens"]
    # dynamics: pieces whose tokens hold more than one Velocity token (counted here from the tokens)
    from smart_core.tokenizer import id_to_token

    levels = [len({id_to_token(int(i)) for i in t if id_to_token(int(i)).startswith("Velocity_")}) for t in tokens]
    assert summary.loc["total", "pieces_with_dynamics"] == sum(n > 1 for n in levels)


def test_missing_folder_is_a_clear_error(tmp_path):
    cfg = Config.from_profile("tiny", corpus_source=str(tmp_path / "nope"), corpus_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        build_corpus(cfg)


def test_music21_corpus_builds_real_music(tiny_corpus):
    summary = tiny_corpus.summary
    assert summary.loc["train", "pieces"] >= 10 and summary.loc["val", "pieces"] >= 1 and summary.loc["test", "pieces"] >= 1
    assert summary.loc["total", "notes"] > 3000


def test_structure_check_rejects_truncation_before_parsing(fixtures):
    good = (fixtures / "c_major_scale.mid").read_bytes()
    check_midi_structure(good)  # a whole file passes
    for bad in (good[:-1], good[:20], b"MThd", (fixtures / "corrupted.mid").read_bytes()):
        with pytest.raises(BadMidi, match="unparseable"):
            check_midi_structure(bad)


def test_time_division_of_zero_or_smpte_is_rejected_before_parsing(fixtures):
    zero_tpq = fixtures / "zero_tpq.mid"
    for read in (load_piano_midi, as_score):
        with pytest.raises(BadMidi, match="unparseable: ticks per quarter is 0"):
            read(zero_tpq)
    good = (fixtures / "c_major_scale.mid").read_bytes()
    smpte = good[:12] + bytes([0xE7, 0x28]) + good[14:]  # 25 frames per second, 40 ticks per frame
    with pytest.raises(BadMidi, match="unparseable: SMPTE"):
        check_midi_structure(smpte)


def test_files_that_flatten_to_one_name_are_all_kept(tmp_path):
    folder = tmp_path / "midi"
    sources = ["nested/x.mid", "nested__x.mid", "y.mid", "y.midi", "z.mid"]
    for k, relative in enumerate(sources):
        write_piece(folder / relative, scale(48 + 2 * k))
    corpus = build_corpus(folder_config(folder, tmp_path))
    pieces = pd.read_csv(corpus.root / "pieces.csv")["piece"]
    assert len(pieces) == len(set(pieces)) == len(sources) and corpus.skipped.empty
    assert "z" in set(pieces)  # a name that is already unique stays as it is
    assert sum(len(corpus.paths(s)) for s in ("train", "val", "test")) == len(sources)


def test_piece_names_are_flat_and_collision_free():
    assert piece_names([Path("a/b.mid"), Path("c.mid")]) == ["a__b", "c"]
    names = piece_names([Path("a/b.mid"), Path("a__b.mid"), Path("a__b.midi")])
    assert len(set(names)) == 3 and all(n.startswith("a__b-") for n in names)
    assert names == piece_names([Path("a/b.mid"), Path("a__b.mid"), Path("a__b.midi")])  # deterministic


def test_duplicate_music_is_kept_once_and_reported(tmp_path):
    folder = tmp_path / "midi"
    first = write_piece(folder / "a.mid", scale(60))
    shutil.copy(first, folder / "b.mid")  # byte for byte
    write_piece(folder / "c.mid", scale(60), tracks=2, drums=True)  # same piano music, other tracks
    write_piece(folder / "d.mid", scale(50))
    write_piece(folder / "e.mid", scale(70))
    corpus = build_corpus(folder_config(folder, tmp_path))
    assert set(pd.read_csv(corpus.root / "pieces.csv")["piece"]) == {"a", "d", "e"}
    skipped = corpus.skipped.set_index("file")
    assert list(skipped["reason"]) == ["duplicate", "duplicate"]
    for copy in ("b.mid", "c.mid"):
        assert skipped.loc[str(folder / copy), "detail"] == f"same music as {folder / 'a.mid'}"


def test_piece_below_the_piano_range_is_skipped_by_its_pitches(tmp_path):
    folder = tmp_path / "midi"
    low = write_piece(folder / "low.mid", range(12, 21))
    # what the tokenizer makes of it: bar, time signature and tempo, no note; more than BOS + EOS
    tokens = [id_to_token(i) for i in score_to_ids(as_score(low))]
    assert len(tokens) > 2 and not any(t.startswith("Pitch_") for t in tokens)
    with pytest.raises(BadMidi) as err:
        load_piano_midi(low)
    assert err.value.reason == "no_notes_in_piano_range"
    assert len(load_piano_midi(write_piece(tmp_path / "mixed.mid", [12, 60])).tracks[0].notes) == 2

    for k in range(3):
        write_piece(folder / f"good{k}.mid", scale(48 + 5 * k))
    corpus = build_corpus(folder_config(folder, tmp_path))
    assert corpus.summary.loc["total", "pieces"] == 3
    assert corpus.skipped["reason"].tolist() == ["no_notes_in_piano_range"]


def test_changed_folder_rebuilds_the_corpus(tmp_path):
    folder = tmp_path / "midi"
    for k in range(3):
        write_piece(folder / f"p{k}.mid", scale(48 + 5 * k))
    cfg = folder_config(folder, tmp_path)

    def pieces() -> pd.DataFrame:
        return pd.read_csv(build_corpus(cfg).root / "pieces.csv").set_index("piece")

    assert len(pieces()) == 3
    (Path(cfg.corpus_dir) / "pieces.csv").write_text("piece\nleft alone\n")
    assert list(pieces().index) == ["left alone"]  # same folder: reused, not rebuilt
    write_piece(folder / "p3.mid", scale(70))
    assert len(pieces()) == 4  # a file added
    (folder / "p0.mid").unlink()
    assert sorted(pieces().index) == ["p1", "p2", "p3"]  # a file removed
    write_piece(folder / "p1.mid", scale(40) + scale(41))
    assert pieces().loc["p1", "notes"] == 16  # a file's contents changed


def test_all_bad_folder_says_why_in_one_line(fixtures, tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    for name in ("corrupted", "not_midi", "empty"):
        shutil.copy(fixtures / f"{name}.mid", folder)
    with pytest.raises(ValueError) as err:
        build_corpus(folder_config(folder, tmp_path))
    message = str(err.value)
    assert "\n" not in message and message.startswith("only 0 usable pieces in")
    assert message.endswith("need at least 3 (skipped 3: unparseable: 2, empty_file: 1)")


def test_music21_cache_and_source_version_come_from_the_config(tiny_cfg, tiny_corpus):
    cache = Path(tiny_cfg.music21_cache_dir)
    assert len(list(cache.glob("*.mid"))) >= 12
    assert not cache.resolve().is_relative_to(REPO.resolve())  # the tests never write into data/
    manifest = json.loads((tiny_corpus.root / "manifest.json").read_text())
    assert importlib.metadata.version("music21") in manifest["source_fingerprint"]
