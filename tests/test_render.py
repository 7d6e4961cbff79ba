import numpy as np
import pretty_midi
import pytest
import symusic

from smart_core.render import FluidRenderer, note_events, render_midi, save_wav
from smart_core.render_pool import RenderPool, RenderSettings
from smart_core.soundfonts import SoundFontNotFound, resolve_soundfont

SF = "timgm6mb"  # ships with pretty_midi: no system package needed


@pytest.fixture(scope="module")
def renderer():
    return FluidRenderer(SF)


def spectral_peak_hz(audio, sr=48_000):
    spec = np.abs(np.fft.rfft(audio.mean(axis=0)))
    return np.fft.rfftfreq(audio.shape[1], 1 / sr)[spec.argmax()]


def test_a4_renders_at_440_hz_for_one_second(renderer, fixtures):
    audio = renderer.render(fixtures / "a4_one_second.mid")
    assert audio.dtype == np.float32 and audio.shape == (2, 48_000)
    assert abs(spectral_peak_hz(audio) - 440.0) < 3.0
    assert np.isclose(np.abs(audio).max(), 1.0, atol=1e-3)  # peak-normalised


def test_duration_follows_the_midi_and_is_capped(renderer, fixtures):
    scale = renderer.render(fixtures / "c_major_scale.mid")  # 8 beats at 90 BPM = 5.33 s
    assert scale.shape[1] == round(8 * 60 / 90 * 48_000)
    long = renderer.render(fixtures / "dense_long.mid", max_seconds=10.0)
    assert long.shape[1] == 10 * 48_000
    cropped = renderer.render(fixtures / "dense_long.mid", max_beats=4)  # 4 beats at 96 BPM
    assert cropped.shape[1] == round(4 * 60 / 96 * 48_000)


def test_same_midi_same_samples(renderer, fixtures):
    a = renderer.render(fixtures / "two_tracks_tempo_change.mid")
    b = renderer.render(fixtures / "two_tracks_tempo_change.mid")
    assert np.array_equal(a, b)


def test_clip_after_a_loud_clip_starts_silent_and_unchanged(fixtures):
    fresh = FluidRenderer(SF).render(fixtures / "c_major_scale.mid", normalise=False)
    used = FluidRenderer(SF)
    loud = used.render(fixtures / "dense_long.mid", normalise=False)
    assert np.abs(loud).max() > 0.1
    after = used.render(fixtures / "c_major_scale.mid", normalise=False)
    assert np.array_equal(after, fresh)
    silent_start = FluidRenderer(SF)
    silent_start.render(fixtures / "dense_long.mid")
    quiet = symusic.Score(480)
    t = symusic.Track(program=0)
    t.notes.append(symusic.Note(480, 480, 60, 10))  # starts one beat in
    quiet.tracks.append(t)
    audio = silent_start.render(quiet, normalise=False)
    assert np.abs(audio[:, :20_000]).max() == 0.0


def test_borrowed_soundfont_renders_exactly_like_loading_the_file(fixtures):
    """Each clip's synth borrows the anchor's parsed SoundFont: the samples must equal those of a
    synth that loads the file itself, and the anchor's font must survive many borrowings."""
    import fluidsynth

    from smart_core.render import clip_seconds, play_events

    renderer = FluidRenderer(SF)
    for name in ["dense_long.mid", "two_tracks_tempo_change.mid", "c_major_scale.mid"] * 2:
        events = note_events(fixtures / name)
        n = int(round(clip_seconds(events, 10.0) * 48_000))
        ref = np.zeros((n, 2), dtype=np.float32)
        synth = fluidsynth.Synth(gain=0.5, samplerate=48_000.0, channels=16,
                                 **{"synth.reverb.active": 0, "synth.chorus.active": 0})
        synth.program_select(0, synth.sfload(resolve_soundfont(SF)), 0, 0)

        def write(start, stop):
            if stop > start:
                base = ref.ctypes.data + start * 8
                renderer._write_float(synth.synth, stop - start, base, 0, 2, base, 1, 2)

        play_events(events, n, 48_000, write, synth.noteon, synth.noteoff)
        synth.delete()
        assert np.abs(ref).max() > 0.01
        assert np.array_equal(renderer.render_events(events, n / 48_000), ref.T)


def test_empty_score_gives_one_second_of_silence(renderer, fixtures):
    audio = renderer.render(symusic.Score(480))
    assert audio.shape == (2, 48_000) and not audio.any()
    assert len(note_events(fixtures / "drums_only.mid")) == 0


def test_inputs_path_score_and_pretty_midi_agree(fixtures):
    path = fixtures / "c_major_scale.mid"
    a = render_midi(path, SF)
    b = render_midi(symusic.Score(str(path)), SF)
    c = render_midi(pretty_midi.PrettyMIDI(str(path)), SF)
    assert np.array_equal(a, b)
    assert a.shape == c.shape and np.abs(a - c).max() < 1e-3


def test_missing_soundfont_says_what_to_install(tmp_path):
    with pytest.raises(SoundFontNotFound, match="neither a registry name"):
        resolve_soundfont(str(tmp_path / "nope.sf2"))
    with pytest.raises(SoundFontNotFound, match="apt-get install|download"):
        resolve_soundfont("yamaha_c5")


def test_pool_returns_results_in_input_order(fixtures):
    files = [fixtures / n for n in ("c_major_scale.mid", "a4_one_second.mid", "dense_long.mid", "two_tracks_tempo_change.mid")]
    serial = [FluidRenderer(SF).render(f) for f in files]
    with RenderPool(RenderSettings(soundfont=SF), workers=2) as pool:
        parallel = pool.render(files * 2)
    for a, b in zip(serial * 2, parallel):
        assert np.array_equal(a, b)


def test_scoring_in_the_render_workers_equals_scoring_here(fixtures):
    from smart_core.reward import StandInScorer

    files = [fixtures / n for n in ("c_major_scale.mid", "a4_one_second.mid", "dense_long.mid", "no_notes.mid")] * 2
    scorer = StandInScorer()
    with RenderPool(RenderSettings(soundfont=SF), workers=2) as pool:
        audio = pool.render(files)
        expected = scorer.score(audio, 48_000)
        kept, scores = pool.render_and_score(files, scorer, keep_audio=True)
        dropped, scores_no_audio = pool.render_and_score(files, scorer, keep_audio=False)
    assert scores.equals(expected) and scores_no_audio.equals(expected)
    assert expected["standin"].nunique() > 1  # distinct clips, distinct scores
    assert dropped == [] and all(np.array_equal(a, b) for a, b in zip(audio, kept))


def test_wav_writer(tmp_path, renderer, fixtures):
    import wave

    audio = renderer.render(fixtures / "a4_one_second.mid")
    save_wav(tmp_path / "a.wav", audio, 48_000)
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 48_000, 48_000)


def _attack_times(audio, note_starts, sr=48_000, hop=240):
    """For each known note start, the time of the envelope's steepest rise within -30..+60 ms."""
    env = np.sqrt(np.convolve(audio.mean(0) ** 2, np.ones(hop) / hop, mode="same"))[::hop]
    rise = np.diff(env, prepend=0.0)
    times = []
    for t in note_starts:
        lo, hi = max(0, int((t - 0.03) * sr / hop)), int((t + 0.06) * sr / hop) + 1
        times.append((lo + int(np.argmax(rise[lo:hi]))) * hop / sr)
    return np.array(times)


def test_tinysoundfont_backend_gives_the_same_notes_at_the_same_times(fixtures):
    pytest.importorskip("tinysoundfont")
    from smart_core.render import make_renderer

    fluid, tiny = make_renderer("fluidsynth", SF), make_renderer("tinysoundfont", SF)
    a4 = tiny.render(fixtures / "a4_one_second.mid")
    assert a4.shape == (2, 48_000) and abs(spectral_peak_hz(a4) - 440.0) < 3.0
    a, b = fluid.render(fixtures / "c_major_scale.mid"), tiny.render(fixtures / "c_major_scale.mid")
    assert a.shape == b.shape
    starts = note_events(fixtures / "c_major_scale.mid")[:, 0]
    ta, tb = _attack_times(a, starts), _attack_times(b, starts)
    assert np.abs(ta - starts).max() < 0.02 and np.abs(tb - starts).max() < 0.02 and np.abs(ta - tb).max() < 0.02
    assert np.array_equal(b, tiny.render(fixtures / "c_major_scale.mid"))  # same clip twice in a row
    with pytest.raises(ValueError, match="unknown renderer"):
        make_renderer("timidity", SF)


def test_corrupted_midi_is_a_clear_error(renderer, fixtures):
    from smart_core.midi import BadMidi

    for name in ("corrupted", "not_midi", "empty"):
        with pytest.raises(BadMidi, match="unparseable"):
            renderer.render(fixtures / f"{name}.mid")


def test_a_corrupt_soundfont_is_one_error_before_any_worker_starts(tmp_path):
    from smart_core.render_pool import RenderPool, RenderSettings

    bad = tmp_path / "broken.sf2"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00sfbk" + b"\x00" * 64)
    with pytest.raises(SoundFontNotFound, match="corrupt, truncated or not a SoundFont") as err:
        RenderPool(RenderSettings(str(bad)), workers=2)
    assert "\n" not in str(err.value)


def test_render_workers_exit_when_their_trainer_is_killed(tmp_path, fixtures):
    """A SIGKILLed parent runs no clean-up; its workers notice within about a second and exit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from smart_core.render_pool import RenderPool, RenderSettings\n"
        "if __name__ == '__main__':\n"
        "    pool = RenderPool(RenderSettings('timgm6mb'), workers=2)\n"
        "    pool.render([sys.argv[1]] * 2)\n"
        "    print('WORKERS', *pool._pool._processes, flush=True)\n"
        "    time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script), str(fixtures / "c_major_scale.mid")],
                              stdout=subprocess.PIPE, text=True)
    line = ""  # libraries may print their own lines first: read up to ours (or the end, if it died)
    while not line.startswith("WORKERS"):
        line = parent.stdout.readline()
        if not line:
            break
    workers = [int(p) for p in line.split()[1:]]
    assert len(workers) == 2, line
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.time() + 10
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if os.path.exists(f"/proc/{p}") and "zombie" not in _state(p)]
    assert not alive, f"render workers {alive} outlived their killed parent"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((line for line in f if line.startswith("State:")), "").lower()
    except OSError:
        return "zombie"


def test_a_piece_that_goes_on_past_the_window_fills_it(renderer):
    """The paper's rule: the piece's length capped at 10 s. Its last note starting before 10 s ends at
    9.5 s, but the piece goes on (a note at 12 s): the clip is 10 s, not 9.5 s."""
    score = symusic.Score(480)
    track = symusic.Track(program=0)
    for start, duration in [(0, 9 * 960 + 480), (12 * 960, 480)]:  # 120 bpm: 960 ticks per second
        track.notes.append(symusic.Note(start, duration, 60, 80))
    score.tracks.append(track)
    score.tempos.append(symusic.Tempo(0, 120.0))
    assert renderer.render(score).shape[1] == 10 * 48_000
    short = symusic.Score(480)
    short.tempos.append(symusic.Tempo(0, 120.0))
    short.tracks.append(symusic.Track(program=0))
    short.tracks[0].notes.append(symusic.Note(0, 6 * 960, 60, 80))
    assert renderer.render(short).shape[1] == 6 * 48_000  # a shorter piece keeps its own length
