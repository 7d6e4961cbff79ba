"""Rendering in parallel: a process pool whose workers each keep one renderer loaded.

Results come back in input order; audio comes back through shared memory; a cheap CPU scorer can
score each clip in the worker that rendered it; workers exit when the process that made the pool
dies (a SIGKILLed trainer runs no clean-up).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .config import Config
from .midi import as_score
from .render import check_soundfont, make_renderer



@dataclass(frozen=True)
class RenderSettings:
    """What a render worker needs of the config (picklable, sent once per worker); the defaults are
    the config's, i.e. the paper's."""

    soundfont: str = Config.soundfont
    sample_rate: int = Config.sample_rate
    max_seconds: float = Config.max_seconds
    max_beats: int = Config.max_beats
    backend: str = Config.renderer

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
# pool's pipe (pickle, chunked reads, unpickle, all in the parent's one result thread) is slower.
# The measured efficiencies are bench/run_all.py's (README, "Benchmarks"): 70-76% on 2 cores when
# the audio comes back, 100% when a CPU scorer scores it in the worker and nothing comes back.
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
