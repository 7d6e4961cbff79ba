"""MIDI -> stereo float32 audio with FluidSynth, following the paper's conventions.

Crop to `max_beats` beats, render for the MIDI's length (last note end) capped at `max_seconds`,
peak-normalise x / (max|x| + 1e-6); a score with no notes gives 1 s of zeros.

Every clip gets a fresh synth (borrowing a SoundFont parsed once) with reverb and chorus off, so
no tail of one clip can leak into the next and the same MIDI always gives the same samples.
`RenderPool` keeps one renderer with its SoundFont loaded per worker process.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import dataclasses
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .errors import MissingInput
from .midi import as_score

# name -> (candidate paths, how to get it)
SOUNDFONTS: dict[str, tuple[list[str], str]] = {
    "fluidr3_gm": (["/usr/share/sounds/sf2/FluidR3_GM.sf2"], "apt-get install fluid-soundfont-gm"),
    "timgm6mb": ([str(Path(__import__("pretty_midi").__file__).parent / "TimGM6mb.sf2"),
                  "/usr/share/sounds/sf2/TimGM6mb.sf2"], "pip install pretty_midi (ships TimGM6mb.sf2)"),
    "musescore": (["/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "/usr/share/sounds/sf3/MuseScore_General.sf3"],
                  "apt-get install musescore-general-soundfont-small"),
    "fluidr3_mono": (["/usr/share/sounds/sf3/FluidR3Mono_GM.sf3"], "apt-get install fluidr3mono-gm-soundfont"),
    # The paper's figures use the Yamaha C5 Salamander grand; no registry ships it. Put the .sf2
    # at this path or pass its path as `soundfont`.
    "yamaha_c5": ([os.path.expanduser("~/.local/share/soundfonts/Yamaha-C5-Salamander-JNv5.1.sf2"),
                   "data/soundfonts/Yamaha-C5-Salamander-JNv5.1.sf2"],
                  "download the Salamander Yamaha C5 SoundFont on a connected machine and copy it to data/soundfonts/"),
}


class SoundFontNotFound(MissingInput):
    """A SoundFont that is not installed, not a file, or that FluidSynth cannot load."""


def resolve_soundfont(name_or_path: str) -> str:
    """A registry name or a path -> an existing file path; a clear error otherwise."""
    if name_or_path in SOUNDFONTS:
        candidates, how = SOUNDFONTS[name_or_path]
        for c in candidates:
            if Path(c).exists():
                return str(Path(c).resolve())
        raise SoundFontNotFound(
            f"SoundFont {name_or_path!r} not found (looked in {candidates}). Get it with: {how}; "
            f"or set the config key `soundfont` to another name ({', '.join(SOUNDFONTS)}) or a .sf2/.sf3 path.")
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() in {".sf2", ".sf3"} and path.exists():
        return str(path.resolve())
    raise SoundFontNotFound(
        f"SoundFont {name_or_path!r} is neither a registry name ({', '.join(SOUNDFONTS)}) nor an existing .sf2/.sf3 file; "
        "set the config key `soundfont`.")


def available_soundfonts() -> dict[str, str]:
    found = {}
    for name in SOUNDFONTS:
        try:
            found[name] = resolve_soundfont(name)
        except SoundFontNotFound:
            pass
    return found


# ------------------------------------------------------------------------------------------------
# MIDI -> timed note events


def note_events(midi, max_beats: int = 100, max_seconds: float = 10.0) -> np.ndarray:
    """Notes cropped to max_beats beats and max_seconds, as a float array [n, 4]: start s, end s,
    pitch, velocity; sorted by start. Drum tracks are ignored."""
    score = as_score(midi)
    limit_ticks = max_beats * score.ticks_per_quarter
    seconds = score.to("second")
    rows = []
    for track_ticks, track_sec in zip(score.tracks, seconds.tracks):
        if track_ticks.is_drum:
            continue
        for nt, ns in zip(track_ticks.notes, track_sec.notes):
            if nt.time >= limit_ticks or ns.time >= max_seconds or nt.duration <= 0:
                continue
            end_tick = min(nt.time + nt.duration, limit_ticks)
            # seconds of the cropped end: scale the note's seconds duration by the kept tick fraction
            end = ns.time + ns.duration * (end_tick - nt.time) / nt.duration
            rows.append((ns.time, min(end, max_seconds), nt.pitch, nt.velocity))
    if not rows:
        return np.zeros((0, 4))
    events = np.asarray(rows, dtype=np.float64)
    return events[np.lexsort((events[:, 2], events[:, 0]))]


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


def clip_seconds(events: np.ndarray, max_seconds: float) -> float:
    """The MIDI's length (last note end) capped at max_seconds; 1 s for an empty clip."""
    return 1.0 if len(events) == 0 else float(min(max_seconds, events[:, 1].max()))


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
        events = note_events(midi, max_beats, max_seconds)
        audio = self.render_events(events, clip_seconds(events, max_seconds))
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


# ------------------------------------------------------------------------------------------------
# Parallel rendering


@dataclass(frozen=True)
class RenderSettings:
    soundfont: str = "fluidr3_gm"
    sample_rate: int = 48_000
    max_seconds: float = 10.0
    max_beats: int = 100
    backend: str = "fluidsynth"

    @classmethod
    def from_config(cls, cfg, **changes) -> "RenderSettings":
        """The config's rendering fields (the one place they are read), with `changes` applied."""
        settings = cls(cfg.soundfont, cfg.sample_rate, cfg.max_seconds, cfg.max_beats, cfg.renderer)
        return dataclasses.replace(settings, **changes)


_WORKER: tuple[object, RenderSettings] | None = None


def _exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """A daemon thread in each worker: exit as soon as the process that made the pool is gone. A
    SIGKILLed trainer runs no clean-up, and its workers would otherwise wait on the pool's pipe."""
    import threading
    import time

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _init_worker(settings: RenderSettings, parent_pid: int | None = None) -> None:
    global _WORKER
    from threadpoolctl import threadpool_limits

    if parent_pid is not None:
        _exit_with_parent(parent_pid)

    # the pool already puts one worker on every core; a BLAS or OpenMP pool inside each (numpy's
    # matmul in a scorer, FluidSynth's loader) would oversubscribe them: measured 0.98 s vs 0.70 s
    # for 16 clips rendered and scored on 2 cores
    threadpool_limits(1)
    _WORKER = (make_renderer(settings.backend, settings.soundfont, settings.sample_rate), settings)


# Audio comes back through shared memory: a 10 s clip is 3.8 MB, and sending it through the
# pool's pipe (pickle, chunked reads, unpickle, all in the parent's one result thread) capped
# 2-core rendering at 56-79% parallel efficiency; through shared memory it is 83-87%.
SharedAudio = tuple[str, tuple[int, ...]]


def _to_shared(audio: np.ndarray) -> SharedAudio:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(create=True, size=max(1, audio.nbytes))
    np.ndarray(audio.shape, np.float32, buffer=shm.buf)[:] = audio
    shm.close()
    return shm.name, audio.shape


def _from_shared(handle: SharedAudio) -> np.ndarray:
    from multiprocessing import shared_memory

    name, shape = handle
    shm = shared_memory.SharedMemory(name=name)
    try:
        return np.ndarray(shape, np.float32, buffer=shm.buf).copy()
    finally:
        shm.close()
        shm.unlink()


def _render_in_worker(midi_bytes: bytes) -> SharedAudio:
    renderer, s = _WORKER
    return _to_shared(renderer.render(midi_bytes, s.max_seconds, s.max_beats))


def _render_and_score_in_worker(midi_bytes: bytes, scorer, keep_audio: bool):
    renderer, s = _WORKER
    audio = renderer.render(midi_bytes, s.max_seconds, s.max_beats)
    return (_to_shared(audio) if keep_audio else None), scorer.score_one(audio, s.sample_rate)


def _to_bytes(midi) -> bytes:
    if isinstance(midi, (bytes, bytearray)):
        return bytes(midi)
    if isinstance(midi, (str, Path)):
        return Path(midi).read_bytes()
    return as_score(midi).dumps_midi()


def _mp_context():
    """spawn, not fork: libfluidsynth loads SoundFonts with OpenMP, and a forked child of a process
    whose OpenMP pool torch already started deadlocks in sfload (seen here). Threads avoid that but
    reached only 71% parallel efficiency on 2 cores. The price of spawn: a plain script that renders
    with a pool needs the usual `if __name__ == "__main__":` guard (notebooks, pytest and
    `python -m smart_core` need nothing)."""
    return mp.get_context("spawn")


class RenderPool:
    """Renders batches of MIDI across worker processes, each holding a loaded synth.

    Results come back in input order. `workers=1` renders in this process (no pool).
    Use as a context manager, or call close().
    """

    def __init__(self, settings: RenderSettings, workers: int = 0):
        check_soundfont(settings.backend, settings.soundfont)  # fail here, in one line, not in a worker
        self.settings = settings
        self.workers = workers or os.cpu_count() or 1
        self._pool = None
        if self.workers > 1:
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=_mp_context(),
                                                initializer=_init_worker, initargs=(settings, os.getpid()))
        else:
            self._local = make_renderer(settings.backend, settings.soundfont, settings.sample_rate)

    def render(self, midis: list, progress: bool = False, desc: str = "render") -> list[np.ndarray]:
        payload = [_to_bytes(m) for m in midis]
        if self._pool is None:
            s = self.settings
            it = (self._local.render(b, s.max_seconds, s.max_beats) for b in payload)
        else:
            it = map(_from_shared, self._pool.map(_render_in_worker, payload, chunksize=self._chunksize(payload)))
        return list(tqdm(it, total=len(payload), desc=desc, disable=not progress, leave=False))

    def _chunksize(self, payload: list) -> int:
        return max(1, len(payload) // (4 * self.workers))

    def render_and_score(self, midis: list, scorer, keep_audio: bool = True):
        """Render and score each clip in the worker that rendered it -> (audios or [], DataFrame).

        For CPU scorers with a per-clip `score_one(audio, sample_rate)` (the stand-in): scoring
        then runs on every core, and unless `keep_audio`, no audio is sent back between processes
        (3.8 MB per 10 s clip). The scores equal `scorer.score(self.render(midis))` exactly."""
        import functools

        import pandas as pd

        payload = [_to_bytes(m) for m in midis]
        if self._pool is None:
            audio = self.render(payload)
            return (audio if keep_audio else []), scorer.score(audio, self.settings.sample_rate)
        job = functools.partial(_render_and_score_in_worker, scorer=scorer, keep_audio=keep_audio)
        results = list(self._pool.map(job, payload, chunksize=self._chunksize(payload)))
        scores = pd.DataFrame([r[1] for r in results], columns=list(scorer.axes))
        return ([_from_shared(r[0]) for r in results] if keep_audio else []), scores

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "RenderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV (standard library only)."""
    import wave

    pcm = (np.clip(audio.T, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.shape[0])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
