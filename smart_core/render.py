"""MIDI -> stereo float32 audio with FluidSynth, following the paper's conventions.

Crop to `max_beats` beats, render for the MIDI's length (last note end) capped at `max_seconds`,
peak-normalise x / (max|x| + 1e-6); a score with no notes gives 1 s of zeros.

Every clip gets a fresh synth (borrowing a SoundFont parsed once) with reverb and chorus off, so
no tail of one clip can leak into the next and the same MIDI always gives the same samples.
SoundFonts are found by smart_core.soundfonts; render_pool.RenderPool runs renderers in parallel.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from .midi import as_score
from .soundfonts import SoundFontNotFound, resolve_soundfont

# ------------------------------------------------------------------------------------------------
# MIDI -> timed note events


def note_events(midi, max_beats: int = 100, max_seconds: float = 10.0) -> np.ndarray:
    """Notes cropped to max_beats beats and max_seconds, as a float array [n, 4]: start s, end s,
    pitch, velocity; sorted by start. Drum tracks are ignored."""
    return timed_notes(midi, max_beats, max_seconds)[0]


def timed_notes(midi, max_beats: int = 100, max_seconds: float = 10.0) -> tuple[np.ndarray, float]:
    """(note_events, the end in seconds of the piece cropped to max_beats). The end counts every
    note of the crop, also those starting after max_seconds: the paper renders the piece's length
    capped at max_seconds, and a piece that goes on past it fills the whole window."""
    score = as_score(midi)
    limit_ticks = max_beats * score.ticks_per_quarter
    seconds = score.to("second")
    rows, piece_end = [], 0.0
    for track_ticks, track_sec in zip(score.tracks, seconds.tracks):
        if track_ticks.is_drum:
            continue
        for nt, ns in zip(track_ticks.notes, track_sec.notes):
            if nt.time >= limit_ticks or nt.duration <= 0:
                continue
            end_tick = min(nt.time + nt.duration, limit_ticks)
            # seconds of the cropped end: scale the note's seconds duration by the kept tick fraction
            end = ns.time + ns.duration * (end_tick - nt.time) / nt.duration
            piece_end = max(piece_end, end)
            if ns.time < max_seconds:
                rows.append((ns.time, min(end, max_seconds), nt.pitch, nt.velocity))
    if not rows:
        return np.zeros((0, 4)), piece_end
    events = np.asarray(rows, dtype=np.float64)
    return events[np.lexsort((events[:, 2], events[:, 0]))], piece_end


def play_events(events: np.ndarray, n_samples: int, sample_rate: int, write, noteon, noteoff) -> None:
    """Drive a synth through the events: write(start, stop) renders samples [start, stop), the
    note callbacks fire between writes at their sample positions; offs before ons at one instant."""
    timeline = [(s, 1, int(p), int(v)) for s, _, p, v in events] + [(e, 0, int(p), 0) for _, e, p, _ in events]
    timeline.sort(key=lambda x: (x[0], x[1]))
    cursor = 0
    for t, is_on, pitch, velocity in timeline:
        pos = min(n_samples, int(round(t * sample_rate)))
        write(cursor, pos)
        cursor = max(cursor, pos)
        if is_on:
            noteon(0, pitch, max(1, min(127, velocity)))
        else:
            noteoff(0, pitch)
    write(cursor, n_samples)


def clip_seconds(events: np.ndarray, max_seconds: float, piece_end: float | None = None) -> float:
    """The piece's length (its last note's end: `piece_end` from timed_notes, else the events') capped
    at max_seconds; 1 s for an empty clip."""
    if len(events) == 0:
        return 1.0
    return float(min(max_seconds, events[:, 1].max() if piece_end is None else piece_end))


def peak_normalise(audio: np.ndarray, in_place: bool = False) -> np.ndarray:
    """x / (max|x| + 1e-6) as float32; `in_place` reuses a float32 buffer (same values, no copies)."""
    out = audio if in_place and audio.dtype == np.float32 else audio.astype(np.float32)
    if out.size:
        out /= max(out.max(), -out.min()) + np.float32(1e-6)
    return out


# ------------------------------------------------------------------------------------------------
# FluidSynth


class FluidRenderer:
    """FluidSynth with one SoundFont. Every clip gets a brand-new synth.

    Why not reuse one synth with all_sounds_off + system_reset between clips? We measured that
    per-voice state (envelopes, filters of recycled voices) survives a reset: the same MIDI then
    renders differently depending on the clip before it (max |diff| 0.007 after a loud clip).
    A new synth is cheap (under 1 ms); loading the SoundFont into it is not (40 ms for FluidR3).
    So the SoundFont is parsed once, into `self._anchor`, and each clip's synth borrows that
    loaded object (`fluid_synth_add_sfont`) and hands it back (`fluid_synth_remove_sfont`) before
    it is deleted. The samples are bit-identical to loading the file per clip (tested).
    """

    def __init__(self, soundfont: str, sample_rate: int = 48_000, gain: float = 0.5):
        import fluidsynth

        self._fluidsynth = fluidsynth
        self.path = resolve_soundfont(soundfont)
        self.sample_rate = sample_rate
        self.gain = gain
        fl = fluidsynth._fl
        # pyfluidsynth wraps only the int16 writer; the float one avoids clipping and a conversion
        self._write_float = fl.fluid_synth_write_float
        self._write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        fl.fluid_synth_get_sfont_by_id.restype = ctypes.c_void_p
        fl.fluid_synth_get_sfont_by_id.argtypes = [ctypes.c_void_p, ctypes.c_int]
        fl.fluid_synth_add_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        fl.fluid_synth_remove_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._fl = fl
        self._anchor = self._synth()
        sfid = self._anchor.sfload(self.path)
        if sfid < 0:
            self._anchor.delete()
            raise SoundFontNotFound(f"FluidSynth cannot load the SoundFont {self.path}: the file is corrupt, truncated "
                                    "or not a SoundFont; reinstall it or set soundfont= to another")
        self._sfont = fl.fluid_synth_get_sfont_by_id(self._anchor.synth, sfid)

    def _synth(self):
        # effects off: reverb and chorus tails are not part of the paper's renders. 16 MIDI
        # channels (pyfluidsynth's default is 256): only channel 0 plays.
        return self._fluidsynth.Synth(gain=self.gain, samplerate=float(self.sample_rate), channels=16,
                                      **{"synth.reverb.active": 0, "synth.chorus.active": 0})

    def _borrowing_synth(self):
        synth = self._synth()
        sfid = self._fl.fluid_synth_add_sfont(synth.synth, self._sfont)
        if sfid < 0:
            synth.delete()
            raise RuntimeError(f"FluidSynth could not attach the loaded SoundFont {self.path}")
        synth.program_select(0, sfid, 0, 0)
        return synth

    def _release(self, synth) -> None:
        # removing the font resets every channel's program, which logs "No preset found" once per
        # channel: silence warnings for that call only
        fl, warn = self._fl, 2  # FLUID_WARN
        fl.fluid_set_log_function(warn, None, None)
        try:
            ok = fl.fluid_synth_remove_sfont(synth.synth, self._sfont) == 0
        finally:
            fl.fluid_set_log_function(warn, fl.fluid_default_log_function, None)
        if not ok:  # deleting a synth that still holds the font would free it under the anchor
            raise RuntimeError("FluidSynth did not release the shared SoundFont; the synth is leaked, not freed")
        synth.delete()

    def render_events(self, events: np.ndarray, seconds: float) -> np.ndarray:
        n_samples = int(round(seconds * self.sample_rate))
        out = np.zeros((n_samples, 2), dtype=np.float32)
        if not len(events):
            return out.T.copy()
        synth = self._borrowing_synth()
        try:
            def write(start: int, stop: int) -> None:
                if stop > start:  # interleaved stereo: left at even, right at odd positions
                    base = out.ctypes.data + start * 2 * out.itemsize
                    self._write_float(synth.synth, stop - start, base, 0, 2, base, 1, 2)

            play_events(events, n_samples, self.sample_rate, write, synth.noteon, synth.noteoff)
        finally:
            self._release(synth)
        return out.T.copy()

    def render(self, midi, max_seconds: float = 10.0, max_beats: int = 100, normalise: bool = True) -> np.ndarray:
        events, piece_end = timed_notes(midi, max_beats, max_seconds)
        audio = self.render_events(events, clip_seconds(events, max_seconds, piece_end))
        return peak_normalise(audio, in_place=True) if normalise else audio


class TinySoundFontRenderer:
    """The authors' renderer (tinysoundfont), same events and conventions as FluidRenderer.

    Not the default, because clips are not exactly independent: like FluidSynth, recycled voices
    keep state, and a clip rendered after a loud one differs by up to 0.003-0.012 (max |x|, after
    sounds_off and a flush; measured on TimGM6mb). A fresh synth per clip would fix that, but
    TinySoundFont has no shared sample cache: re-loading FluidR3 costs 0.41 s per clip. Like the
    authors, we flush 4 s of audio before each clip."""

    def __init__(self, soundfont: str, sample_rate: int = 48_000, gain: float = 0.0):
        import tinysoundfont

        self.path = resolve_soundfont(soundfont)
        self.sample_rate = sample_rate
        self.synth = tinysoundfont.Synth(gain=gain, samplerate=sample_rate)
        self.sfid = self.synth.sfload(self.path)
        self.synth.program_select(0, self.sfid, 0, 0)

    def render_events(self, events: np.ndarray, seconds: float) -> np.ndarray:
        n_samples = int(round(seconds * self.sample_rate))
        out = np.zeros((n_samples, 2), dtype=np.float32)
        if not len(events):
            return out.T.copy()
        self.synth.sounds_off(0)
        self.synth.generate(4 * self.sample_rate)  # the authors' flush
        flat = out.reshape(-1)

        def write(start: int, stop: int) -> None:
            if stop > start:
                self.synth.generate(stop - start, buffer=memoryview(flat[2 * start:2 * stop]).cast("B"))

        play_events(events, n_samples, self.sample_rate, write, self.synth.noteon, self.synth.noteoff)
        self.synth.sounds_off(0)
        return out.T.copy()

    render = FluidRenderer.render


RENDERERS = {"fluidsynth": FluidRenderer, "tinysoundfont": TinySoundFontRenderer}


def make_renderer(backend: str, soundfont: str, sample_rate: int = 48_000):
    if backend not in RENDERERS:
        raise ValueError(f"unknown renderer {backend!r}; use {' or '.join(RENDERERS)}")
    return RENDERERS[backend](soundfont, sample_rate)


_CHECKED: set[tuple[str, str, int, int]] = set()


def check_soundfont(backend: str, soundfont: str) -> str:
    """Resolve the SoundFont and load it once in this process (cached per file), so a missing or
    corrupt font is one clear error before any worker starts or any run folder is written."""
    path = resolve_soundfont(soundfont)
    st = os.stat(path)
    key = (backend, path, st.st_size, st.st_mtime_ns)
    if key not in _CHECKED:
        make_renderer(backend, path)
        _CHECKED.add(key)
    return path


def render_midi(midi, soundfont: str | None = None, sample_rate: int = 48_000, max_seconds: float = 10.0,
                max_beats: int = 100, renderer: str = "fluidsynth") -> np.ndarray:
    """Render one MIDI (path, bytes, symusic Score or PrettyMIDI) to float32 audio of shape (2, n),
    with a renderer kept loaded in this process for later calls."""
    key = (renderer, resolve_soundfont(soundfont or "fluidr3_gm"), sample_rate)
    if key not in _LOADED_RENDERERS:
        _LOADED_RENDERERS[key] = make_renderer(*key)
    return _LOADED_RENDERERS[key].render(midi, max_seconds=max_seconds, max_beats=max_beats)


_LOADED_RENDERERS: dict[tuple[str, str, int], object] = {}


def save_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV (standard library only)."""
    import wave

    pcm = (np.clip(audio.T, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.shape[0])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
