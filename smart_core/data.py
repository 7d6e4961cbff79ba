"""Training corpus: real piano music as single-track MIDI, split by piece, tokenized.

Sources:
  * "music21" (default, no network): the Bach chorales and keyboard pieces, plus the pieces by
    Mozart, Joplin, Clara Schumann, Beach, Chopin, Handel and Schubert that music21 ships. Every piece is merged to one piano track. Folk tunes are left
    out on purpose: they are monophonic, and a piano model trained on them learns single lines.
  * any folder of MIDI files (a local MAESTRO or MetaMIDI piano subset), searched recursively.

Files that cannot be parsed, are empty, hold no pitched notes (or none on the piano's keys), or
repeat the music of another file are skipped, counted by reason in the log and listed in
`skipped.csv`; the build never stops on one bad file. A built corpus is reused until its config or
its source (see `source_fingerprint`) changes.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.metadata
import json
import logging
import multiprocessing as mp
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import symusic
from tqdm.auto import tqdm

from .config import Config
from .errors import InputError, MissingInput
from .midi import BadMidi, load_piano_midi, n_notes
from .tokenizer import score_to_ids

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Beethoven and Haydn are left out: music21 has only their string quartets, which are not keyboard
# music and take minutes each to parse (op. 132, op. 133), a third of the small profile's budget.
MUSIC21_COMPOSERS = ("bach", "mozart", "joplin", "schumann_clara", "beach", "chopin", "handel", "schubert")
MIDI_SUFFIXES = {".mid", ".midi", ".MID", ".MIDI"}


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
            # only the format suffix goes: bwv153.1, bwv153.5 and bwv153.9 are three chorales
            name = "-".join([composer, *inner[:-1], inner[-1].rsplit(".", 1)[0]])
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


def build_corpus(cfg: Config, force: bool = False) -> Corpus:
    """Build (or reuse) the corpus described by cfg. Returns a Corpus; prints nothing itself."""
    root = Path(cfg.corpus_dir)
    manifest_path = root / "manifest.json"
    manifest = _manifest(cfg)
    if not force and manifest_path.exists() and json.loads(manifest_path.read_text()) == manifest:
        return Corpus(root)

    manifest_path.unlink(missing_ok=True)  # a build that stops half way must not be reused
    named_files, skipped = _source_files(cfg)
    scores, origin, unreadable = _read_pieces(named_files)
    scores, duplicates = drop_duplicates(scores, origin)
    skipped += unreadable + duplicates
    if len(scores) < 3:
        raise InputError(f"only {len(scores)} usable pieces in {cfg.corpus_source}; need at least 3 "
                         f"(skipped {len(skipped)}: {_reason_counts(skipped)})")

    split_of = assign_splits(sorted(scores), cfg.val_fraction, cfg.test_fraction)
    pieces = _write_splits(root, scores, split_of)
    pieces.to_csv(root / "pieces.csv", index=False)
    _summary(pieces).to_csv(root / "summary.csv")
    pd.DataFrame(skipped, columns=["file", "reason", "detail"]).to_csv(root / "skipped.csv", index=False)
    if skipped:
        log.warning("skipped %d files: %s", len(skipped), _reason_counts(skipped))
    manifest_path.write_text(json.dumps(manifest))
    return Corpus(root)


def _manifest(cfg: Config) -> dict:
    """Everything the built corpus depends on: when any of it changes, the corpus is rebuilt."""
    return {"source": cfg.corpus_source, "max_pieces": cfg.corpus_max_pieces,
            "val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction,
            "source_fingerprint": source_fingerprint(cfg.corpus_source), "version": 3}


def source_fingerprint(source: str) -> str:
    """Changes when the source's pieces may have changed.

    music21's bundled corpus is fixed by music21's version and our composer list. A folder is
    fingerprinted by the relative path, size and modification time (ns) of every MIDI file: one
    stat per file, cheap on every reuse of the corpus even for a large folder, where hashing the
    contents would read every byte each time. A file touched but not changed rebuilds the corpus
    for nothing, which is the safe side."""
    if source == "music21":
        return f"music21 {importlib.metadata.version('music21')}: {','.join(MUSIC21_COMPOSERS)}"
    folder = Path(source)
    if not folder.is_dir():
        return "no such folder"  # build_corpus stops with a clear error
    digest = hashlib.sha1()
    for path in midi_files(folder):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in MIDI_SUFFIXES and p.is_file())


def _source_files(cfg: Config) -> tuple[list[tuple[str, Path]], list[dict]]:
    """(piece name, MIDI file) of every source piece, and the source files already skipped."""
    if cfg.corpus_source == "music21":
        files, skipped = convert_music21(Path(cfg.music21_cache_dir), cfg.corpus_max_pieces, cfg.render_workers)
        return [(path.stem, path) for path in files], skipped
    folder = Path(cfg.corpus_source)
    if not folder.is_dir():
        raise MissingInput(f"corpus_source {folder} is not a folder of MIDI files (or 'music21')")
    files = midi_files(folder)
    if cfg.corpus_max_pieces:
        files = files[: cfg.corpus_max_pieces]
    if not files:
        raise MissingInput(f"no .mid/.midi files under {folder}")
    return list(zip(piece_names([path.relative_to(folder) for path in files]), files)), []


def piece_names(relative_paths: list[Path]) -> list[str]:
    """One flat name per file of a folder corpus: nested/x.mid -> nested__x. Files that flatten to
    the same name (nested/x.mid and nested__x.mid, x.mid and x.midi) each get a short hash of
    their relative path appended, so that no piece silently overwrites another."""
    flat = ["__".join(path.with_suffix("").parts) for path in relative_paths]
    count = Counter(flat)
    names = [name if count[name] == 1 else f"{name}-{_short_hash(path.as_posix())}"
             for name, path in zip(flat, relative_paths)]
    clashes = sorted(name for name, n in Counter(names).items() if n > 1)
    if clashes:  # only a file named like another one's hashed name gets here
        raise InputError(f"MIDI files map to the same piece names {clashes}; rename one of each")
    return names


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _read_pieces(named_files: list[tuple[str, Path]]) -> tuple[dict[str, symusic.Score], dict[str, str], list[dict]]:
    """(piano score by piece name, source file by piece name, skipped rows of unusable files)."""
    scores, origin, skipped = {}, {}, []
    for name, path in tqdm(named_files, desc="reading MIDI"):
        try:
            scores[name] = load_piano_midi(path)
            origin[name] = str(path)
        except BadMidi as err:
            skipped.append({"file": str(path), "reason": err.reason, "detail": str(err)})
    return scores, origin, skipped


def drop_duplicates(scores: dict[str, symusic.Score], origin: dict[str, str]) -> tuple[dict[str, symusic.Score], list[dict]]:
    """Keep the first piece (by name) of each group with the same music: one copy in train and
    another in test would leak the test set. Pieces compare by their merged piano score written as
    MIDI, so a copy with other track names or an extra drum track is a duplicate too."""
    kept: dict[str, symusic.Score] = {}
    first_with: dict[str, str] = {}
    skipped = []
    for name in sorted(scores):
        digest = hashlib.sha1(scores[name].dumps_midi()).hexdigest()
        if digest in first_with:
            skipped.append({"file": origin[name], "reason": "duplicate",
                            "detail": f"same music as {origin[first_with[digest]]}"})
            continue
        first_with[digest] = name
        kept[name] = scores[name]
    return kept, skipped


def _reason_counts(skipped: list[dict]) -> str:
    """'unparseable: 2, empty_file: 1': the skip reasons, most frequent first."""
    counts = Counter(row["reason"] for row in skipped).most_common()
    return ", ".join(f"{reason}: {n}" for reason, n in counts) or "none"


def _write_splits(root: Path, scores: dict[str, symusic.Score], split_of: dict[str, str]) -> pd.DataFrame:
    """`<split>/<piece>.mid` and `tokens-<split>.npz`; returns one row per piece."""
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
        for old in (root / split).glob("*.mid"):
            old.unlink()
    rows = []
    token_lists: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    velocities = velocity_ids()
    for name in tqdm(sorted(scores), desc="tokenizing"):
        score, split = scores[name], split_of[name]
        ids = np.asarray(score_to_ids(score), dtype=np.int16)
        score.dump_midi(root / split / f"{name}.mid")
        token_lists[split].append(ids)
        rows.append({"piece": name, "split": split, "notes": n_notes(score),
                     "seconds": score.to("second").end(), "tokens": len(ids),
                     "velocity_levels": len(np.unique(ids[np.isin(ids, velocities)]))})
    for split in SPLITS:
        arrays = token_lists[split] or [np.zeros(0, np.int16)]
        offsets = np.cumsum([0] + [len(a) for a in token_lists[split]])
        np.savez(root / f"tokens-{split}.npz", flat=np.concatenate(arrays), offsets=offsets)
    return pd.DataFrame(rows)


def velocity_ids() -> np.ndarray:
    """The ids of the tokenizer's Velocity tokens."""
    from .tokenizer import paper_tokenizer

    return np.array(sorted(i for t, i in paper_tokenizer().vocab.items() if t.startswith("Velocity_")))


def _summary(pieces: pd.DataFrame) -> pd.DataFrame:
    """Per split: pieces, notes, hours, tokens, and how many pieces have dynamics (more than one
    velocity token: music21 realises a score's dynamics markings as velocities; a score without
    markings plays every note at one velocity, and a model trained on those learns one)."""
    summary = pieces.groupby("split").agg(pieces=("piece", "count"), notes=("notes", "sum"),
                                          hours=("seconds", lambda s: s.sum() / 3600), tokens=("tokens", "sum"),
                                          pieces_with_dynamics=("velocity_levels", lambda v: int((v > 1).sum())))
    summary = summary.reindex(list(SPLITS)).fillna(0)
    summary.loc["total"] = summary.sum()
    summary["hours"] = summary["hours"].round(3)
    return summary
