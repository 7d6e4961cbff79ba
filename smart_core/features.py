"""Low-level MIDI features of the paper's figure 4, computed with MusPy where it defines them.

The rate metrics are MusPy 0.5.0's own functions on the file as `muspy.read_midi` reads it, so
the numbers are comparable with every other MusPy-based paper; we do not re-implement them.
A piece with no notes gives n_notes = 0 and NaN for every rate, never an exception.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import muspy
import numpy as np
import pandas as pd

from .midi import as_score

FEATURES = ("n_notes", "polyphony", "polyphony_rate", "empty_beat_rate", "scale_consistency", "pitch_class_entropy",
            "pitch_range", "velocity_range", "velocity_mean", "duration_seconds", "n_tempo_changes", "n_time_signature_changes")
_MUSPY_RATES = ("polyphony", "polyphony_rate", "empty_beat_rate", "scale_consistency", "pitch_class_entropy")


def to_muspy(midi) -> muspy.Music:
    """Path, MIDI bytes, symusic Score or muspy Music -> muspy Music, always via a MIDI file."""
    if isinstance(midi, muspy.Music):
        return midi
    if isinstance(midi, (str, Path)):
        return muspy.read_midi(str(midi))
    data = bytes(midi) if isinstance(midi, (bytes, bytearray)) else midi.dumps_midi()
    with tempfile.NamedTemporaryFile(suffix=".mid") as tmp:
        tmp.write(data)
        tmp.flush()
        return muspy.read_midi(tmp.name)


def _notes(music: muspy.Music) -> list:
    return [n for t in music.tracks if not t.is_drum for n in t.notes]


def midi_features(midi) -> dict[str, float]:
    music = to_muspy(midi)
    notes = _notes(music)
    out: dict[str, float] = {"n_notes": len(notes)}
    for name in _MUSPY_RATES:
        out[name] = float(getattr(muspy, name)(music)) if notes else float("nan")
    if notes:
        pitches = [n.pitch for n in notes]
        velocities = [n.velocity for n in notes]
        out["pitch_range"] = float(max(pitches) - min(pitches))
        out["velocity_range"] = float(max(velocities) - min(velocities))
        out["velocity_mean"] = float(np.mean(velocities))
    else:
        out["pitch_range"] = out["velocity_range"] = out["velocity_mean"] = float("nan")
    end_ticks = max((n.time + n.duration for n in notes), default=0)
    out["duration_seconds"] = float(_seconds_at(music, end_ticks))
    out["n_tempo_changes"] = max(0, len(music.tempos) - 1)
    out["n_time_signature_changes"] = max(0, len(music.time_signatures) - 1)
    return {k: out[k] for k in FEATURES}


def _seconds_at(music: muspy.Music, tick: int) -> float:
    tempos = sorted(music.tempos, key=lambda t: t.time) or [muspy.Tempo(0, 120.0)]
    seconds, last_tick, qpm = 0.0, 0, 120.0 if tempos[0].time > 0 else tempos[0].qpm
    for t in tempos:
        if t.time >= tick:
            break
        seconds += (t.time - last_tick) / music.resolution * 60.0 / qpm
        last_tick, qpm = t.time, t.qpm
    return seconds + (tick - last_tick) / music.resolution * 60.0 / qpm


def pooled_note_values(midis) -> dict[str, np.ndarray]:
    """Per-note values pooled over pieces: pitches, velocities, durations and inter-onset
    intervals in seconds, melodic intervals (semitones between consecutive onsets' top notes)."""
    pooled = {k: [] for k in ("pitch", "velocity", "duration", "ioi", "melodic_interval")}
    for midi in midis:
        sec = as_score(midi).to("second")
        notes = sorted((n for t in sec.tracks if not t.is_drum for n in t.notes), key=lambda n: (n.time, -n.pitch))
        if not notes:
            continue
        pooled["pitch"] += [n.pitch for n in notes]
        pooled["velocity"] += [n.velocity for n in notes]
        pooled["duration"] += [n.duration for n in notes]
        onsets = sorted({round(n.time, 6) for n in notes})
        pooled["ioi"] += list(np.diff(onsets))
        tops = {}
        for n in notes:
            tops.setdefault(round(n.time, 6), n.pitch)
        top_line = [tops[o] for o in onsets]
        pooled["melodic_interval"] += list(np.diff(top_line))
    return {k: np.asarray(v, dtype=float) for k, v in pooled.items()}


def add_per_second(table: pd.DataFrame) -> pd.DataFrame:
    """PER_SECOND_FEATURES from the stored ones: notes per second of the piece (a longer piece has
    more notes, so a count alone mixes density with length). A piece without notes has 0 notes per
    second (so the rate and the count are compared over the same pairs)."""
    seconds = table["duration_seconds"].where(table["duration_seconds"] > 0)
    rate = (table["n_notes"] / seconds).where(table["n_notes"] > 0, 0.0)
    return table.assign(notes_per_second=rate)


PER_SECOND_FEATURES = ("notes_per_second",)


def features_table(samples: pd.DataFrame, midi_column: str = "midi_path") -> pd.DataFrame:
    """Features for every sample of an evaluation table, joined to its reward axes."""
    rows = [midi_features(p) for p in samples[midi_column]]
    feats = pd.DataFrame(rows, index=samples.index)
    drop = [c for c in (*FEATURES, *PER_SECOND_FEATURES) if c in samples.columns]
    return add_per_second(pd.concat([samples.drop(columns=drop), feats], axis=1))
