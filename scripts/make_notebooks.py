"""Writes notebooks/*.ipynb (run after editing a notebook's cells here; the .ipynb are committed).

    .venv/bin/python scripts/make_notebooks.py            # writes notebooks/
    .venv/bin/python scripts/make_notebooks.py OUT_DIR    # writes OUT_DIR instead (e.g. to compare)

The cells live here, not in the .ipynb: edit them here and rerun, never the notebooks' JSON
(tests/test_notebooks.py checks that the committed notebooks are exactly what this script writes).
Importing this module has no side effect; `build_notebooks()` returns the notebooks.
"""
import sys
from pathlib import Path

import nbformat as nbf

OUT = Path(__file__).resolve().parent.parent / "notebooks"

COLAB = '''# Set-up. On Colab only: installs system packages and this package, picks the `paper` profile
# when a GPU is present, and can keep runs on Google Drive. Elsewhere this cell does nothing.
import os, sys
ON_COLAB = "google.colab" in sys.modules
COLAB_PROFILE = None
SMART_REPO = os.environ.get("SMART_REPO", "")  # this repository's git URL, e.g. https://github.com/<you>/smart-repro
MOUNT_DRIVE = False
if ON_COLAB:
    import subprocess, torch
    subprocess.run("apt-get -qq install -y libfluidsynth3 fluid-soundfont-gm > /dev/null", shell=True, check=True)
    if not SMART_REPO:
        raise RuntimeError("set SMART_REPO to this repository's git URL (see README, 'Open in Colab')")
    if not os.path.exists("smart-repro"):
        subprocess.run(f"git clone -q {SMART_REPO} smart-repro", shell=True, check=True)
    os.chdir("smart-repro")
    subprocess.run("pip -q install -e . && pip -q install --no-deps audiobox-aesthetics==0.0.4", shell=True, check=True)
    COLAB_PROFILE = "paper" if torch.cuda.is_available() else "small"
    if MOUNT_DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
        os.makedirs("/content/drive/MyDrive/smart-runs", exist_ok=True)
        if not os.path.exists("runs"):
            os.symlink("/content/drive/MyDrive/smart-runs", "runs")'''

PARAMS = '''profile = "small"      # tiny | small | paper
seed = 0
runs_dir = "runs"
corpus_dir = None      # None: the profile's default
figures_dir = None     # None: figures/<profile>
overrides = {}         # any other Config field, e.g. {"reward_backend": "standin", "soundfont": "musescore"}'''

CONFIG = '''if COLAB_PROFILE:
    profile = COLAB_PROFILE
from IPython.display import Image, Audio, Markdown, display
import pandas as pd
from smart_core.config import Config
from smart_core import report, stages
named = {k: v for k, v in dict(seed=seed, runs_dir=runs_dir, corpus_dir=corpus_dir).items() if v is not None}
cfg = Config.from_profile(profile, **{**overrides, **named})
fig_dir = report.out_dir(cfg, figures_dir)
def show(name):
    display(Image(filename=str(fig_dir / f"{name}.png")))
print(f"profile {cfg.profile}, seed {cfg.seed}, runs in {cfg.profile_dir}, figures in {fig_dir}")'''

NOTEBOOKS = {
    "00_base_model": [
        ("md", "# 00 · Corpus and base model\nBuilds the piano corpus (music21 offline, or your MIDI folder), "
               "trains (or loads) the Phi-3 base model, and compares SoundFonts as the paper did."),
        ("code", COLAB), ("params", PARAMS), ("code", CONFIG),
        ("code", "result = stages.base_model_stage(cfg)\nprint('base model from', result['model_source'])\n"
                 "print('reward backend:', result['scorer']['backend'], '| axes:', ', '.join(result['scorer']['axes']))"),
        ("code", "res = report.base_model(cfg, figures_dir)\ndisplay(res['corpus'])\n"
                 "card = res['model_card']\n"
                 "print(f\"{card['architecture']}: {card['layers']} layers, hidden {card['hidden_size']}, {card['heads']} heads, \"\n"
                 "      f\"{card['parameters']/1e6:.1f} M parameters; from {card['id'] or card['path']} ({card['source']}, \"\n"
                 "      f\"revision {card['revision']}, sha256 {card['sha256'][:12]})\")\n"
                 "p = res['pretrain']\n"
                 "if p:  # trained here\n"
                 "    print(f\"validation loss {p['best_val_loss']:.3f} nats/token vs unigram baseline {p['unigram_val_loss']:.3f}\"\n"
                 "          f\" ({p['seconds']:.0f} s of pre-training)\")\n"
                 "else:\n"
                 "    print('not pre-trained here: no loss curve (the model card above says where it came from)')\n"
                 "s = res['samples']\nprint(f\"unconditional samples: {s['fraction_with_notes']:.0%} have notes, mean {s['mean_notes']:.1f} notes ({s['n']} samples)\")"),
        ("code", "if res['pretrain']:\n    show('base_model_loss')\nshow('base_model_samples')"),
        ("md", "One unconditional sample, rendered with the profile's SoundFont:"),
        ("code", "from smart_core.render import render_midi\n"
                 "sample_path = result['samples'].sort_values('n_notes', ascending=False)['midi_path'].iloc[0]\n"
                 "display(Audio(render_midi(sample_path, cfg.soundfont, cfg.sample_rate, renderer=cfg.renderer), rate=cfg.sample_rate))"),
        ("md", "## SoundFont comparison (the paper's table)\nMean score of corpus pieces (100 beats, 10 s) per SoundFont."),
        ("code", "display(res.get('soundfonts'))\nshow('soundfont_table')"),
    ],
    "01_grpo_training": [
        ("md", "# 01 · GRPO training\nRuns (or resumes) one named run, evaluates base and tuned models on independent "
               "evaluation prompts, and sweeps diversity over its checkpoints. `make reproduce` runs this notebook once per run."),
        ("code", COLAB), ("params", PARAMS + '\nrun_name = "smart"   # smart | long | long_beta0 | a replicate, smart_seed<N>'), ("code", CONFIG),
        ("code", "print(report.run_label(cfg, run_name))\nresult = stages.training_stage(cfg, run_name)\n"
                 "print('evaluation prompts seen among training prompts:', result['overlap'])"),
        ("code", "res = report.training(cfg, run_name, figures_dir)\ndisplay(res['stage_seconds'].to_frame())\n"
                 "display(res['steps'][['step', 'reward_mean', 'kl', 'entropy', 'n_notes_mean', 'n_empty', 'seconds_total']].tail())"),
        ("code", "for name in res['figures']:  # a replicate remakes its family's curves (mean and interval over seeds)\n"
                 "    show(name)"),
        ("code", "if result['sweep'] is not None:  # replicates have no sweep of their own\n"
                 "    display(result['sweep'])"),
    ],
    "02_feature_analysis": [
        ("md", "# 02 · Feature analysis\nThe paper's figures 3 and 4 (base vs tuned, pooled over the replicate seeds), "
               "paired statistics for every feature and axis (base and tuned complete the same prompts with the same "
               "sampling streams: Wilcoxon signed-rank, rank-biserial effect with a bootstrap CI within seeds, Holm), "
               "and the claims table: a computed verdict (agrees / opposite / inconclusive / not testable here) on each "
               "direction the paper states, with its reason."),
        ("code", COLAB), ("params", PARAMS), ("code", CONFIG),
        ("code", "res = report.features(cfg, figures_dir)\n"
                 "print(f\"{res['n_base']} base and {res['n_tuned']} tuned evaluation samples over seeds {res['seeds']}; \"\n"
                 "      f\"reward backend: {report.backend_of(cfg)}\")\n"
                 "display(res['training_summary'].round(3))\n"
                 "show('fig3_reward_axes')\nshow('fig4_features')"),
        ("code", "display(res['statistics'].round(4))"),
        ("md", "## Claims table"),
        ("code", "pd.set_option('display.max_colwidth', 80)\n"
                 "display(res['claims'][['claim', 'median_base', 'median_tuned', 'effect', 'effect_ci', "
                 "'seeds_in_direction', 'verdict', 'per_second_verdict']])\n"
                 "display(Markdown((fig_dir / 'claims_discussion.md').read_text()))"),
    ],
    "03_diversity_collapse": [
        ("md", "# 03 · Diversity collapse\nThe paper's figure 5 (reward histogram above the average piano roll, four "
               "systems) and the numbers behind it: distinct-n, pairwise distance, Vendi score, prompt dependence, along training."),
        ("code", COLAB), ("params", PARAMS), ("code", CONFIG),
        ("code", "res = report.diversity(cfg, figures_dir)\nshow('fig5_diversity_collapse')\ndisplay(res['metrics'].round(3))"),
        ("code", "if 'sweep' in res:\n    show('diversity_along_training')\n    show('quality_diversity_frontier')"),
    ],
    "04_listening_study": [
        ("md", "# 04 · Listening study\nMakes the stimuli (base vs tuned, the paper's filters, loudness-matched), "
               "then analyses ratings. With no real ratings yet, it analyses a **SIMULATED** study from the generative "
               "model below, and every table and figure says so. Serve the study with "
               "`python -m smart_core listen --study runs/<profile>/study`."),
        ("code", COLAB),
        ("params", PARAMS + "\n# generative model of the SIMULATED study (used only when no real ratings exist)\n"
                            "sim_participants = 14\nsim_effect = 0.8\nsim_sd_participant = 1.0\nsim_sd_prompt = 0.6\nsim_sd_residual = 1.5\n"
                            "# power by simulation at STATED effects (tuned - base, rating points; never the observed effect)\n"
                            "power_effects = [0.25, 0.5, 0.8]\npower_participants = [6, 10, 14, 20, 30, 40]"),
        ("code", CONFIG),
        ("code", "sim = dict(n_participants=sim_participants, effect=sim_effect, sd_participant=sim_sd_participant,\n"
                 "           sd_prompt=sim_sd_prompt, sd_residual=sim_sd_residual)\n"
                 "from smart_core.listening import filter_pass_table\n"
                 "study = stages.listening_stage(cfg, simulation=sim)\n"
                 "display(study['key'].drop(columns=['seed']).head())\n"
                 "print('stimuli that passed the paper filters (at least one note, empty-beat rate 0, at least 8 s), per system,\\n'\n"
                 "      f'and how many were kept without passing after all {cfg.listening_max_attempts} attempts:')\n"
                 "display(filter_pass_table(study['key'], cfg.listening_max_attempts))\n"
                 "if study['simulated']:\n    display(Markdown('## ⚠ SIMULATED ratings: no real ratings exist yet. Nothing below is a result.'))"),
        ("code", "res = report.listening(cfg, study['ratings'], study['simulated'], study['key'], figures_dir, n_sim=cfg.power_simulations,\n"
                 "                      power_effects=power_effects, power_participants=power_participants)\n"
                 "print('mixed model structure used:', res['mixed_model']['structure'])\n"
                 "display(res['table'].round(4))\n"
                 "print('simulated power at the stated effects (95% Monte Carlo interval; test and generative model in the table):')\n"
                 "display(res['power'].drop(columns=['generative model']).round(3))\n"
                 "show('listening_means_SIMULATED' if study['simulated'] else 'listening_means')\n"
                 "show('listening_power_SIMULATED' if study['simulated'] else 'listening_power')\n"
                 "if 'agreement' in res:\n    print('rating vs reward model:', {k: v for k, v in res['agreement'].items() if k != 'table'})"),
    ],
    "05_beyond": [
        ("md", "# 05 · Beyond the paper\nThree questions the paper leaves open, each answered from data "
               "(`make beyond`; the ablation runs train in notebook 01 first):\n\n"
               "1. **Best-of-N**: how far does sampling N completions from the base model and keeping the best get, "
               "for how many reward evaluations, against the tuned runs on the same prompts?\n"
               "2. **Reward transfer**: does the base-to-tuned gain survive SoundFonts the policy never heard "
               "(and a second judge, where one is available)?\n"
               "3. **Design choices against the collapse**: does any GRPO variant reach the long run's reward while "
               "keeping the base model's diversity?"),
        ("code", COLAB), ("params", PARAMS), ("code", CONFIG),
        ("code", "result = stages.beyond_stage(cfg)\n"
                 "print(f\"best-of-N: {len(result['draws'])} scored draws from the base model; reward transfer: \"\n"
                 "      f\"{len(result['transfer_scores'])} scores on {', '.join(result['fonts']) or 'no other font'}\")\n"
                 "print('cross-scored by:', result['cross_scorer'] or result['cross_note'])"),
        ("code", "res = report.beyond(cfg, figures_dir)\n"
                 "if 'best_of_n' in res:\n"
                 "    display(res['best_of_n'][['system', 'reward_evaluations', 'mean_reward', 'mean_reward_ci', "
                 "'pairwise_distance', 'vendi']].round(3))\n"
                 "    show('best_of_n')"),
        ("code", "if 'reward_transfer' in res:\n"
                 "    t = res['reward_transfer']\n"
                 "    display(t[t['training_reward_axis'] | (t['scorer_role'] == 'cross-scored')][['run', 'soundfont', "
                 "'scorer', 'axis', 'median_difference', 'difference_ci', 'gain_retained', 'verdict']].round(3))\n"
                 "    show('reward_transfer')"),
        ("code", "if 'ablations' in res:\n"
                 "    display(res['ablations'][['system', 'changes', 'mean_reward', 'reward_vs_baseline_ci', "
                 "'pairwise_distance_vs_base_ci', 'vendi_vs_base_ci', 'reaches_baseline_reward', 'keeps_base_diversity']])\n"
                 "    show('ablations_frontier')\n    show('ablations_training')"),
        ("code", "display(Markdown((fig_dir / 'beyond_discussion.md').read_text()))"),
    ],
}


def build_notebooks() -> dict[str, nbf.NotebookNode]:
    """{file name ("00_base_model.ipynb", ...): notebook}, as written to notebooks/."""
    notebooks = {}
    for name, cells in NOTEBOOKS.items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        for i, (kind, src) in enumerate(cells):
            if kind == "md":
                cell = nbf.v4.new_markdown_cell(src)
            else:
                cell = nbf.v4.new_code_cell(src)
                if kind == "params":
                    cell.metadata["tags"] = ["parameters"]
            cell.id = f"{name[:2]}-cell-{i:02d}"  # stable ids: regenerating changes only what changed
            nb.cells.append(cell)
        notebooks[f"{name}.ipynb"] = nb
    return notebooks


def serialise(nb: nbf.NotebookNode) -> str:
    """The text written to disk: what nbformat.write writes (indent 1, sorted keys, non-ASCII kept,
    one trailing newline)."""
    text = nbf.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def main(out: Path = OUT):
    out.mkdir(parents=True, exist_ok=True)
    for filename, nb in build_notebooks().items():
        with open(out / filename, "w", encoding="utf-8", newline="\n") as f:
            f.write(serialise(nb))
        print("wrote", out / filename)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
