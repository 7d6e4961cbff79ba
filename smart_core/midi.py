"""MIDI files in, symusic scores out: the one place in the package that parses MIDI.

The corpus builder, the tokenizer, the renderer and the analyses all read MIDI through here, so a
broken file is rejected the same way everywhere. Imports nothing from smart_core.
"""

from __future__ import annotations

import io
from pathlib import Path

import symusic

# The piano's 88 keys, A0 to C8: the paper tokenizer's pitch range (it drops notes outside it).
PIANO_LOWEST, PIANO_HIGHEST = 21, 108


class BadMidi(ValueError):
    """A MIDI file that cannot be used; `reason` is one of the corpus summary's skip reasons."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def check_midi_structure(data: bytes) -> None:
    """Reject bytes that must never reach symusic, as BadMidi("unparseable"):

    * chunks that run past the end: symusic can read past the end of a truncated buffer and then
      parse whatever memory follows (seen in the test suite: a truncated fixture parsed once in a
      full run);
    * a time division of 0 ticks per quarter (symusic reads it, then miditok divides by it) or in
      SMPTE frames (symusic refuses it, with a message that does not say why).
    """
    if len(data) < 14 or data[:4] != b"MThd":
        raise BadMidi("unparseable", "no MThd header")
    _check_chunks_fit(data)
    _check_time_division(data)


def _check_chunks_fit(data: bytes) -> None:
    offset = 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise BadMidi("unparseable", f"truncated chunk header at byte {offset}")
        length = int.from_bytes(data[offset + 4:offset + 8], "big")
        if offset + 8 + length > len(data):
            raise BadMidi("unparseable", f"chunk {data[offset:offset + 4]!r} at byte {offset} runs past the end of the file")
        offset += 8 + length


def _check_time_division(data: bytes) -> None:
    """The header is format, track count, division (2 bytes each); the top bit of the division
    marks SMPTE time (frames per second and ticks per frame) instead of ticks per quarter."""
    header_length = int.from_bytes(data[4:8], "big")
    if header_length < 6:
        raise BadMidi("unparseable", f"MThd header is {header_length} bytes, expected 6")
    division = int.from_bytes(data[12:14], "big")
    if division & 0x8000:
        raise BadMidi("unparseable", "SMPTE time division (frames per second) is not supported")
    if division == 0:
        raise BadMidi("unparseable", "ticks per quarter is 0")


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


def n_notes(score: symusic.Score) -> int:
    return int(sum(len(t.notes) for t in score.tracks))


def load_piano_midi(source) -> symusic.Score:
    """Read a MIDI file (path or bytes) as a single piano track; raises BadMidi with a reason."""
    data = _read_midi_bytes(source)
    check_midi_structure(data)
    try:
        score = symusic.Score.from_midi(data)
    except Exception as err:
        raise BadMidi("unparseable", f"{type(err).__name__}: {err}") from err
    if not any(len(t.notes) for t in score.tracks):
        raise BadMidi("no_notes")
    if all(t.is_drum for t in score.tracks if len(t.notes)):
        raise BadMidi("drums_only")
    piano = merge_to_piano(score)
    pitches = [n.pitch for n in piano.tracks[0].notes]
    if not pitches:
        raise BadMidi("no_notes", "every pitched note has zero duration")
    # the tokenizer drops such notes and would leave a piece of bars and tempos only
    if not any(PIANO_LOWEST <= p <= PIANO_HIGHEST for p in pitches):
        raise BadMidi("no_notes_in_piano_range",
                      f"pitches {min(pitches)}-{max(pitches)}, piano is {PIANO_LOWEST}-{PIANO_HIGHEST}")
    return piano


def _read_midi_bytes(source) -> bytes:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise BadMidi("missing", str(path))
        if path.stat().st_size == 0:
            raise BadMidi("empty_file", str(path))
        return path.read_bytes()
    data = bytes(source)
    if not data:
        raise BadMidi("empty_file")
    return data


def as_score(midi) -> symusic.Score:
    """A path, MIDI bytes, a symusic Score or a pretty_midi object -> symusic Score (ticks)."""
    if isinstance(midi, symusic.Score):
        return midi if midi.ttype == symusic.TimeUnit.tick else midi.to("tick")
    if isinstance(midi, (str, Path, bytes, bytearray)):
        data = Path(midi).read_bytes() if isinstance(midi, (str, Path)) else bytes(midi)
        check_midi_structure(data)  # raises BadMidi (a ValueError) before symusic sees a broken file
        return symusic.Score.from_midi(data)
    if hasattr(midi, "write") and hasattr(midi, "instruments"):  # pretty_midi.PrettyMIDI
        buf = io.BytesIO()
        midi.write(buf)
        return symusic.Score.from_midi(buf.getvalue())
    raise TypeError(f"cannot read a {type(midi).__name__} as MIDI; pass a path, bytes, symusic Score or PrettyMIDI")
