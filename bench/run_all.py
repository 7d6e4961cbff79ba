"""Benchmarks, each against a named baseline measured in the same run. `make bench` runs them all.

    render    64 generated-like 10 s clips: ours (pool, all cores) vs pyfluidsynth one clip at a time
              on one core vs the authors' approach (tinysoundfont, 4 s flushed before each clip);
              also rendering + stand-in scoring in the workers (the training path)
    score     Audiobox on 8 clips: the package's own forward (fp32) vs ours (batched windows)
    sample    tokens/s: our static-cache sampler vs transformers generate vs the forward-pass bound
"""

import argparse
import os
import platform
import time

import numpy as np
import symusic
import torch


def generated_like_clips(n=64, seed=0):
    """Piano textures like a tuned model's output: 10 s at 120 BPM, ~60 notes, 3 voices."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        s = symusic.Score(480)
        s.tempos.append(symusic.Tempo(0, 120.0))
        t = symusic.Track(program=0)
        for i in range(60):
            t.notes.append(symusic.Note(i * 160, int(rng.integers(120, 960)), int(rng.integers(36, 96)), int(rng.integers(40, 90))))
        s.tracks.append(t)
        clips.append(s.dumps_midi())
    return clips


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def row(stage, ours, baseline_name, baseline, unit="s"):
    print(f"| {stage} | {ours:.3f} {unit} | {baseline_name}: {baseline:.3f} {unit} | {baseline / ours:.2f}x |", flush=True)


def bench_render(soundfont):
    from smart_core.render import FluidRenderer, make_renderer
    from smart_core.render_pool import RenderPool, RenderSettings
    from smart_core.reward import StandInScorer

    clips = generated_like_clips()
    seconds_audio = 64 * 10.0
    serial = FluidRenderer(soundfont)
    serial.render(clips[0])
    t_serial, ref = timed(lambda: [serial.render(c) for c in clips])
    cores = os.cpu_count()
    scorer = StandInScorer()
    scorer.score(ref[:2], 48_000)  # imports and first-call costs out of the timing
    t_score_serial, _ = timed(lambda: scorer.score(ref, 48_000), 2)
    with RenderPool(RenderSettings(soundfont), cores) as pool:
        pool.render(clips[:cores])  # workers up, SoundFont loaded
        pool.render_and_score(clips[:cores], scorer, keep_audio=False)
        t_pool, out = timed(lambda: pool.render(clips), 2)
        t_train, _ = timed(lambda: pool.render_and_score(clips, scorer, keep_audio=False), 2)
    assert all(np.array_equal(a, b) for a, b in zip(ref, out))
    print(f"render: {64 / t_pool:.1f} clips/s on {cores} cores ({seconds_audio / t_pool:.0f}x real time); "
          f"one core {64 / t_serial:.1f} clips/s; parallel efficiency {t_serial / t_pool / cores:.0%} with the audio "
          f"sent back, {(t_serial + t_score_serial) / t_train / cores:.0%} rendering + stand-in scoring in the "
          f"workers without it (the training path)")
    row("render 64 x 10 s", t_pool, "pyfluidsynth 1 clip at a time, 1 core", t_serial)
    row("render + stand-in score 64 clips, in the workers", t_train, "the same on 1 core", t_serial + t_score_serial)
    try:
        tiny = make_renderer("tinysoundfont", soundfont)
    except ImportError:
        print("tinysoundfont not installed (pip install --no-deps tinysoundfont): authors' baseline skipped")
        return
    t_tsf, _ = timed(lambda: [tiny.render(c) for c in clips])
    row("render 64 x 10 s", t_pool, "authors: tinysoundfont, 1 core, 4 s flush", t_tsf)
    row("render per clip, 1 core", t_serial / 64, "tinysoundfont per clip, 1 core", t_tsf / 64)


def bench_score():
    import tempfile

    from smart_core.render import FluidRenderer
    from smart_core.reward import AudioboxScorer, StandInScorer, make_random_audiobox_checkpoint

    clips = [FluidRenderer("timgm6mb").render(c) for c in generated_like_clips(8)]
    with tempfile.TemporaryDirectory() as tmp:
        scorer = AudioboxScorer(str(make_random_audiobox_checkpoint(f"{tmp}/ckpt.pt")), device="cpu", autocast=False)
        scorer.score(clips[:1], 48_000)
        t_ref, ref = timed(lambda: scorer.score_reference(clips, 48_000), 2)
        t_ours, ours = timed(lambda: scorer.score(clips, 48_000), 2)
        scorer.model.enable_autocast = True
        t_bf16, bf16 = timed(lambda: scorer.score(clips, 48_000), 1)
    print(f"score: max |dCE| ours vs package {np.abs(ours['CE'] - ref['CE']).max():.2e}; "
          f"bf16 autocast on CPU: {t_bf16:.1f} s, |dCE| {np.abs(bf16['CE'] - ref['CE']).max():.3f} (off by default on CPU)")
    row("Audiobox, 8 clips (random weights, real architecture)", t_ours, "package forward fp32", t_ref)
    standin = StandInScorer()
    t_si, _ = timed(lambda: standin.score(clips, 48_000), 3)
    row("stand-in, 8 clips", t_si, "Audiobox package forward", t_ref)


def bench_sample():
    from smart_core.config import Config
    from smart_core.decoder import StaticCacheDecoder
    from smart_core.model import build_model
    from smart_core.sampling import sample

    cfg = Config.from_profile("small")
    model = build_model(cfg).eval()
    prompts = torch.tensor([[1, 21, 408, 190, 358]] * 16)
    n = cfg.max_completion_tokens
    gen = torch.Generator().manual_seed(0)

    def ours(backend="auto"):
        with torch.no_grad():
            return sample(model, prompts, n, 1.0, gen, backend=backend)

    def hf():
        with torch.no_grad():
            return model.generate(prompts, max_new_tokens=n, min_new_tokens=n, do_sample=True, top_k=0, pad_token_id=0)

    ours()
    t_ours, (c, _) = timed(ours, 2)
    t_hf_forward, _ = timed(lambda: ours("hf"), 2)
    t_hf, _ = timed(hf, 2)
    # the bound: one forward of the batch per new token, through our decoder, at the mean cache length;
    # the lean one-token path (fp32) against the decoder's general path on the same cache, in alternating
    # rounds of 100 steps (this machine's speed drifts by tens of percent within minutes), best round kept
    decoders = {}
    for lean in (True, False):
        dec = StaticCacheDecoder(model, 16, 5 + n, lean=lean)
        dec.prefill(prompts)
        for t in range(n // 2):
            dec.step(c[:, t])
        decoders[lean] = dec
    step_tokens = c[:, n // 2]

    def hundred_steps(dec):
        for _ in range(100):
            dec.length = 5 + n // 2
            dec.step(step_tokens)

    rounds = {True: [], False: []}
    for _ in range(8):
        for lean, dec in decoders.items():
            rounds[lean].append(timed(lambda: hundred_steps(dec))[0] / 100)
    step_time = {lean: min(times) for lean, times in rounds.items()}
    t_step = step_time[True]
    tokens = c.numel()
    t_ours = t_ours * (16 * n) / tokens
    print(f"sample: ours {16 * n / t_ours:.0f} tok/s, same loop on the transformers forward {16 * n / t_hf_forward:.0f} "
          f"tok/s, transformers generate {16 * n / t_hf:.0f} tok/s, bound (one decoder forward of the batch per new "
          f"token) {16 / t_step:.0f} tok/s: ours at {t_step * n / t_ours:.0%} of the bound")
    row(f"sample 16 x {n} tokens", t_ours, "transformers generate (KV cache)", t_hf)
    row(f"sample 16 x {n} tokens", t_ours, "same sampler on the transformers forward", t_hf_forward)
    row("decoder step, 16 sequences, mid-completion", step_time[True] * 1e3, "the decoder's general step path",
        step_time[False] * 1e3, unit="ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["render", "score", "sample"])
    parser.add_argument("--soundfont", default="fluidr3_gm")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    print(f"# SMART benchmarks, {platform.node()} ({os.cpu_count()} cores, torch {torch.__version__}), "
          f"{time.strftime('%Y-%m-%d %H:%M')}\n\n| stage | ours | baseline | ratio |\n|---|---|---|---|", flush=True)
    if args.only in (None, "render"):
        bench_render(args.soundfont)
    if args.only in (None, "sample"):
        bench_sample()
    if args.only in (None, "score"):
        bench_score()
