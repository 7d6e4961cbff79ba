"""Training corpus: real piano music as single-track MIDI, split by piece, tokenized.

Sources:
  * "music21" (default, no network): the Bach chorales and keyboard pieces, plus the pieces by
    Mozart, Joplin, Clara Schumann, Beach, Chopin, Handel and Schubert that music21 ships. Every piece is merged to one piano track. Folk tunes are left
    out on purpose: they are monophonic, and a piano model trained on them learns single lines.
  * any folder of MIDI files (a local MAESTRO or MetaMIDI piano subset), searched recursively.

Files that cannot be parsed, are empty, or hold no pitched notes are skipped, counted by reason
in the summary and listed in `skipped.csv`; the build never stops on one bad file.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import symusic
from tqdm.auto import tqdm

from .config import Config

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Beethoven and Haydn are left out: music21 has only their string quartets, which are not keyboard
# music and take minutes each to parse (op. 132, op. 133), a third of the small profile's budget.
MUSIC21_COMPOSERS = ("bach", "mozart", "joplin", "schumann_clara", "beach", "chopin", "handel", "schubert")
MIDI_SUFFIXES = {".mid", ".midi", ".MID", ".MIDI"}


class BadMidi(ValueError):
    """A MIDI file that cannot be used; `reason` is one of the summary's skip reasons."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def merge_to_piano(score: symusic.Score) -> symusic.Score:
    """All pitched notes of all tracks on one piano track (program 0); drums dropped."""
    merged = symusic.Score(score.ticks_per_quarter)
    merged.tempos = score.tempos.copy()
    merged.time_signatures = score.time_signatures.copy()
    piano = symusic.Track(name="Piano", program=0, is_drum=False)
    notes = [n for t in score.tracks if not t.is_drum for n in t.notes if n.duration > 0]
    notes.sort(key=lambda n: (n.time, n.pitch))
    for n in notes:
        piano.notes.append(n)
    merged.tracks.append(piano)
    return merged


def check_midi_structure(data: bytes) -> None:
    """Reject files whose chunks do not fit: a truncated file must never reach symusic, which can
    read past the end of such a buffer and then parse whatever memory follows (seen in the test
    suite: a truncated fixture parsed once in a full run)."""
    if len(data) < 14 or data[:4] != b"MThd":
        raise BadMidi("unparseable", "no MThd header")
    offset = 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise BadMidi("unparseable", f"truncated chunk header at byte {offset}")
        length = int.from_bytes(data[offset + 4:offset + 8], "big")
        if offset + 8 + length > len(data):
            raise BadMidi("unparseable", f"chunk {data[offset:offset + 4]!r} at byte {offset} runs past the end of the file")
        offset += 8 + length


def load_piano_midi(source) -> symusic.Score:
    """Read a MIDI file (path or bytes) as a single piano track; raises BadMidi with a reason."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise BadMidi("missing", str(path))
        if path.stat().st_size == 0:
            raise BadMidi("empty_file", str(path))
        data = path.read_bytes()
    else:
        data = bytes(source)
        if not data:
            raise BadMidi("empty_file")
    check_midi_structure(data)
    try:
        score = symusic.Score.from_midi(data)
    except Exception as err:
        raise BadMidi("unparseable", f"{type(err).__name__}: {err}") from err
    if not any(len(t.notes) for t in score.tracks):
        raise BadMidi("no_notes")
    if all(t.is_drum for t in score.tracks if len(t.notes)):
        raise BadMidi("drums_only")
    return merge_to_piano(score)


def _music21_to_midi(args: tuple[str, str]) -> tuple[str, str | None]:
    """Worker: convert one music21 corpus file to a MIDI file. Returns (name, error or None)."""
    source, target = args
    try:
        import music21

        stream = music21.converter.parse(source)
        mf = music21.midi.translate.streamToMidiFile(stream)
        mf.open(target, "wb")
        mf.write()
        mf.close()
        return Path(target).stem, None
    except Exception as err:
        Path(target).unlink(missing_ok=True)
        return Path(target).stem, f"{type(err).__name__}: {err}"


def music21_sources(max_pieces: int | None = None) -> list[tuple[str, str]]:
    """(name, path) for the bundled pieces we use, in a fixed order. A name is the file's path
    inside music21's corpus (beethoven/opus18no1/movement1.mxl -> beethoven-opus18no1-movement1):
    bare stems collide (every quartet has a movement1)."""
    from music21 import corpus

    items, seen = [], set()
    for composer in MUSIC21_COMPOSERS:
        for path in sorted(str(p) for p in corpus.getComposer(composer)):
            parts = Path(path).parts
            inner = parts[parts.index(composer) + 1:] if composer in parts else (Path(path).name,)
            name = "-".join([composer, *inner[:-1], inner[-1].split(".")[0]])
            if name not in seen:  # a few pieces ship in several formats: keep the first
                seen.add(name)
                items.append((name, path))
    return items[:max_pieces] if max_pieces else items


def convert_music21(cache_dir: Path, max_pieces: int | None = None, workers: int = 0) -> tuple[list[Path], list[dict]]:
    """Convert the music21 pieces to MIDI under cache_dir (once; later calls reuse the files)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = music21_sources(max_pieces)
    failed_log = cache_dir / "conversion_failures.json"
    failed = json.loads(failed_log.read_text()) if failed_log.exists() else {}
    todo = [(src, str(cache_dir / f"{name}.mid")) for name, src in sources
            if not (cache_dir / f"{name}.mid").exists() and name not in failed]
    if todo:
        workers = workers or mp.cpu_count()
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for name, err in tqdm(pool.map(_music21_to_midi, todo, chunksize=4), total=len(todo),
                                  desc="music21 -> MIDI"):
                if err:
                    failed[name] = err
        failed_log.write_text(json.dumps(failed, indent=1))
    paths = [cache_dir / f"{name}.mid" for name, _ in sources if (cache_dir / f"{name}.mid").exists()]
    skipped = [{"file": name, "reason": "music21_conversion_failed", "detail": err}
               for name, err in failed.items() if name in {n for n, _ in sources}]
    return paths, skipped


def assign_splits(names: list[str], val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Deterministic split by piece: pieces ordered by a hash of their name; each split non-empty
    when there are at least three pieces."""
    order = sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())
    n = len(order)
    n_test = max(1, round(test_fraction * n)) if n >= 3 else 0
    n_val = max(1, round(val_fraction * n)) if n >= 3 else 0
    split = {}
    for i, name in enumerate(order):
        split[name] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return split


@dataclass
class Corpus:
    """A built corpus folder: `<split>/*.mid`, `tokens-<split>.npz`, `summary.csv`, `skipped.csv`."""

    root: Path

    def paths(self, split: str) -> list[Path]:
        return sorted((self.root / split).glob("*.mid"))

    def tokens(self, split: str) -> list[np.ndarray]:
        data = np.load(self.root / f"tokens-{split}.npz")
        flat, offsets = data["flat"], data["offsets"]
        return [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]

    @property
    def summary(self) -> pd.DataFrame:
        return pd.read_csv(self.root / "summary.csv", index_col=0)

    @property
    def skipped(self) -> pd.DataFrame:
        path = self.root / "skipped.csv"
        return pd.read_csv(path) if path.stat().st_size > 1 else pd.DataFrame(columns=["file", "reason", "detail"])


def _manifest(cfg: Config) -> dict:
    return {"source": cfg.corpus_source, "max_pieces": cfg.corpus_max_pieces,
            "val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction, "version": 1}


def build_corpus(cfg: Config, force: bool = False) -> Corpus:
    """Build (or reuse) the corpus described by cfg. Returns a Corpus; prints nothing itself."""
    from .tokenizer import score_to_ids

    root = Path(cfg.corpus_dir)
    manifest_path = root / "manifest.json"
    if not force and manifest_path.exists() and json.loads(manifest_path.read_text()) == _manifest(cfg):
        return Corpus(root)

    if cfg.corpus_source == "music21":
        files, skipped = convert_music21(Path("data/music21_midi"), cfg.corpus_max_pieces, cfg.render_workers)
    else:
        folder = Path(cfg.corpus_source)
        if not folder.is_dir():
            raise FileNotFoundError(f"corpus_source {folder} is not a folder of MIDI files (or 'music21')")
        files = sorted(p for p in folder.rglob("*") if p.suffix in MIDI_SUFFIXES)
        if cfg.corpus_max_pieces:
            files = files[: cfg.corpus_max_pieces]
        skipped = []
        if not files:
            raise FileNotFoundError(f"no .mid/.midi files under {folder}")

    scores: dict[str, symusic.Score] = {}
    for path in tqdm(files, desc="reading MIDI"):
        name = path.stem if cfg.corpus_source == "music21" else \
            str(path.relative_to(cfg.corpus_source).with_suffix("")).replace("/", "__")
        try:
            scores[name] = load_piano_midi(path)
        except BadMidi as err:
            skipped.append({"file": str(path), "reason": err.reason, "detail": str(err)})
    if len(scores) < 3:
        raise ValueError(f"only {len(scores)} usable pieces in {cfg.corpus_source}; need at least 3 "
                         f"(skipped {len(skipped)}: see the reasons above)")

    split_of = assign_splits(sorted(scores), cfg.val_fraction, cfg.test_fraction)
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
        for old in (root / split).glob("*.mid"):
            old.unlink()
    rows = []
    token_lists: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for name in tqdm(sorted(scores), desc="tokenizing"):
        score, split = scores[name], split_of[name]
        ids = np.asarray(score_to_ids(score), dtype=np.int16)
        if len(ids) <= 2:  # notes outside the piano range only
            skipped.append({"file": name, "reason": "no_notes_in_piano_range", "detail": ""})
            continue
        score.dump_midi(root / split / f"{name}.mid")
        token_lists[split].append(ids)
        rows.append({"piece": name, "split": split, "notes": sum(len(t.notes) for t in score.tracks),
                     "seconds": score.to("second").end(), "tokens": len(ids)})
    for split in SPLITS:
        arrays = token_lists[split] or [np.zeros(0, np.int16)]
        offsets = np.cumsum([0] + [len(a) for a in token_lists[split]])
        np.savez(root / f"tokens-{split}.npz", flat=np.concatenate(arrays), offsets=offsets)

    pieces = pd.DataFrame(rows)
    pieces.to_csv(root / "pieces.csv", index=False)
    summary = pieces.groupby("split").agg(pieces=("piece", "count"), notes=("notes", "sum"),
                                          hours=("seconds", lambda s: s.sum() / 3600), tokens=("tokens", "sum"))
    summary = summary.reindex(list(SPLITS)).fillna(0)
    summary.loc["total"] = summary.sum()
    summary["hours"] = summary["hours"].round(3)
    summary.to_csv(root / "summary.csv")
    skipped_df = pd.DataFrame(skipped, columns=["file", "reason", "detail"])
    skipped_df.to_csv(root / "skipped.csv", index=False)
    if len(skipped_df):
        log.warning("skipped %d files: %s", len(skipped_df), skipped_df["reason"].value_counts().to_dict())
    manifest_path.write_text(json.dumps(_manifest(cfg)))
    return Corpus(root)


def skip_counts(corpus: Corpus) -> pd.Series:
    return corpus.skipped["reason"].value_counts()
