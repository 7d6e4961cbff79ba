"""Listening study: statistics on simulated data, the server's rules, and a real headless browser."""

import csv
import datetime as dt
import json
import logging
import shutil
import socket
import sqlite3
import threading
import time
import urllib.request
import wave
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from smart_core import ratings
from smart_core.listening import (MIXED_STRUCTURES, SimulatedStudy, analyze_ratings, balanced_mixed_model,
                                  filter_pass_table, fit_mixed_model, power_at_effects, wilcoxon_p)
from smart_core.listening_app import ApiError, Study, participant_order, serve
from smart_core.ratings import export_ratings
from smart_core.render import FluidRenderer, save_wav
from smart_core.stimuli import (StudyConfig, draw_stimulus_ids, filter_failure_lines, loudness_match, warn_filter_failures,
                                write_stimuli, write_study_config)


# ------------------------------------------------------------------ statistics
def test_analysis_recovers_a_known_effect():
    truth = 1.0
    ratings = SimulatedStudy(n_participants=20, n_prompts=15, effect=truth, seed=3).draw()
    result = analyze_ratings(ratings)
    mm = result["mixed_model"]
    assert mm["ci_low"] < truth < mm["ci_high"]
    assert mm["p"] < 0.01 and result["wilcoxon"]["p"] < 0.01
    assert result["systems"]["tuned"]["mean"] > result["systems"]["base"]["mean"]
    assert 0 < result["standardised_effect"] < 1.5
    assert mm["structure"] in dict(MIXED_STRUCTURES) and "var_participant_slope" in mm and "var_prompt_slope" in mm


def test_no_effect_gives_no_systematically_small_p():
    ps = [analyze_ratings(SimulatedStudy(effect=0.0, seed=s).draw())["mixed_model"]["p"] for s in range(12)]
    assert np.mean(np.array(ps) < 0.05) <= 0.25 and np.median(ps) > 0.2


def test_power_grows_with_participants():
    model = SimulatedStudy(sd_participant=1.0, sd_prompt=0.6, sd_residual=1.5)
    curve = power_at_effects([0.8], (4, 30), model, n_sim=200, seed=0)
    assert curve["power"].iloc[1] > curve["power"].iloc[0] and curve["power"].iloc[1] > 0.8


def _long(ratings: np.ndarray) -> pd.DataFrame:
    """A (participants, prompts, 2) array as the long table analyze_ratings reads."""
    return pd.DataFrame([{"participant": f"P{p}", "prompt": f"k{k}", "system": ("base", "tuned")[s],
                          "rating": float(ratings[p, k, s])}
                         for p in range(ratings.shape[0]) for k in range(ratings.shape[1]) for s in range(2)])


def _no_slope_ratings(participant_slope_sd: float = 0.0, n_participants: int = 12, n_prompts: int = 10, seed: int = 0):
    """Ratings whose tuned - base differences vary by participant x prompt only through a
    double-centred term: every prompt's mean difference is exactly the effect (1.0), and so is every
    participant's unless participant_slope_sd adds participant slopes. A slope with no variance at all
    in the data: its REML estimate is zero, the fit singular."""
    rng = np.random.default_rng(seed)
    base = (5 + rng.normal(0, 1, (n_participants, 1)) + rng.normal(0, 0.7, (1, n_prompts))
            + rng.normal(0, 1, (n_participants, n_prompts)))
    d = rng.normal(0, 1.4, (n_participants, n_prompts))
    d = d - d.mean(axis=0, keepdims=True) - d.mean(axis=1, keepdims=True) + d.mean()
    slopes = rng.normal(0, participant_slope_sd, (n_participants, 1)) if participant_slope_sd else 0.0
    if participant_slope_sd:
        slopes = slopes - slopes.mean()
    return np.stack([base, base + 1.0 + d + slopes], axis=-1)


def test_a_singular_fit_falls_back_and_says_why(capsys):
    mm = fit_mixed_model(_long(_no_slope_ratings()))
    assert mm["structure"] == "intercepts only" and mm["effect"] == pytest.approx(1.0)
    assert mm["var_participant_slope"] == 0 and mm["var_prompt_slope"] == 0 and mm["components"] == ["participant", "prompt"]
    reason = mm["fallback_reason"]
    assert all(structure + ":" in reason for structure, _ in MIXED_STRUCTURES[:3])  # each richer one was tried
    assert "participant slope variance at the boundary" in reason and "prompt slope variance at the boundary" in reason
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and printed.startswith("mixed model fell back to 'intercepts only': ")

    # participants' differences vary, prompts' do not: only the prompt slope is dropped
    mm = fit_mixed_model(_long(_no_slope_ratings(participant_slope_sd=1.0)), verbose=False)
    assert mm["structure"] == MIXED_STRUCTURES[1][0] and mm["var_participant_slope"] > 0.3
    assert "prompt slope variance at the boundary" in mm["fallback_reason"]
    assert "participant slope variance" not in mm["fallback_reason"] and capsys.readouterr().out == ""


def test_the_full_model_is_kept_when_both_slopes_vary(capsys):
    ratings = SimulatedStudy(seed=3, sd_participant_slope=0.8, sd_prompt_slope=0.5).draw()
    mm = analyze_ratings(ratings)["mixed_model"]
    assert mm["structure"] == MIXED_STRUCTURES[0][0] and mm["fallback_reason"] == "" and not mm["singular"]
    assert mm["var_participant_slope"] > 0.1 and mm["var_prompt_slope"] > 0.01
    assert capsys.readouterr().out == ""


def test_the_closed_form_of_the_power_simulation_is_the_mixed_model():
    rng = np.random.default_rng(1)
    studies = np.concatenate([SimulatedStudy(n_participants=8, n_prompts=6, sd_prompt_slope=0.6).arrays(3, rng),
                              SimulatedStudy(n_participants=8, n_prompts=6, sd_participant_slope=0.8,
                                             sd_prompt_slope=0.6).arrays(2, rng)])
    closed = balanced_mixed_model(studies)
    names = ("participant", "prompt", "participant_slope", "prompt_slope")
    for i, study in enumerate(studies):
        mm = fit_mixed_model(_long(study), verbose=False)
        assert closed["effect"][i] == pytest.approx(mm["effect"], rel=1e-9)
        assert closed["se"][i] == pytest.approx(mm["se"], rel=1e-3) and closed["p"][i] == pytest.approx(mm["p"], rel=1e-2)
        kept = [n for n, k in zip(names, closed["keep"][i]) if k]
        assert [c for c in mm["components"] if c.endswith("slope")] == [c for c in kept if c.endswith("slope")]


def test_power_at_stated_effects_with_its_monte_carlo_error():
    n_sim, alpha = 2000, 0.05
    three_se = 3 * np.sqrt(alpha * (1 - alpha) / n_sim)
    model = SimulatedStudy(n_prompts=60, sd_participant_slope=0.6, sd_prompt_slope=0.6)
    table = power_at_effects([0.0, 1.0], [60], model, n_sim=n_sim, alpha=alpha, seed=0)
    null, large = table.iloc[0], table.iloc[1]
    assert large["power"] > 0.99 and abs(null["power"] - alpha) < three_se
    assert null["mc_se"] == pytest.approx(np.sqrt(null["power"] * (1 - null["power"]) / n_sim))
    assert null["ci_low"] < alpha < null["ci_high"] and large["ci_high"] == 1.0 and large["ci_low"] > 0.99
    assert list(table["effect"]) == [0.0, 1.0] and (table["n_sim"] == n_sim).all()
    # the Wilcoxon on participant means holds its level without prompt slopes, and not with them
    no_prompt_slope = SimulatedStudy(sd_participant_slope=0.5)
    assert abs(power_at_effects([0.0], [20], no_prompt_slope, n_sim=n_sim, test="wilcoxon")["power"].iloc[0] - alpha) < three_se
    prompt_slope = SimulatedStudy(sd_prompt_slope=0.3)
    assert power_at_effects([0.0], [40], prompt_slope, n_sim=n_sim, test="wilcoxon")["power"].iloc[0] > alpha + three_se


def test_vectorised_wilcoxon_is_scipys():
    from scipy import stats

    rng = np.random.default_rng(0)
    for n, rows in ((3, 30), (6, 30), (9, 30), (13, 3), (14, 30), (20, 30)):  # scipy takes ~2 s a row at 13
        d = np.round(rng.normal(0.3, 1, (rows, n)) * 4) / 4  # ties and zeros
        d[0] = 0
        d[1] = rng.normal(size=n)  # no ties
        expected = [stats.wilcoxon(row).pvalue if row.any() else 1.0 for row in d]
        assert wilcoxon_p(d) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_filter_pass_counts_per_system(tmp_path):
    key = pd.DataFrame({"stimulus": [f"s{i}" for i in range(7)], "system": ["base"] * 4 + ["tuned"] * 3,
                        "attempt": [1, 20, 3, 20, 1, 1, 20],
                        "passed_filters": [True, False, True, True, True, True, False]})
    key.to_csv(tmp_path / "key.csv", index=False)  # as the study keeps it
    table = filter_pass_table(pd.read_csv(tmp_path / "key.csv"), max_attempts=20).set_index("system")
    assert table.loc["base", ["stimuli", "passed_filters", "max_attempts", "failed_after_max_attempts"]].tolist() == [4, 3, 20, 1]
    assert table.loc["base", "share_passed"] == 0.75 and table.loc["base", "mean_attempts"] == 11
    assert table.loc["tuned", ["stimuli", "passed_filters", "failed_after_max_attempts"]].tolist() == [3, 2, 1]
    assert table.loc["tuned", "mean_attempts"] == pytest.approx(22 / 3)
    assert table.loc["all", ["stimuli", "passed_filters", "failed_after_max_attempts"]].tolist() == [7, 5, 2]
    bare = filter_pass_table(key[["stimulus", "system"]]).set_index("system")  # a hand-made study: counts unknown
    assert bare.loc["base", "stimuli"] == 4 and bare["passed_filters"].isna().all()


def test_the_report_marks_simulated_ratings_and_writes_power_and_filter_tables(tmp_path):
    from smart_core import report
    from smart_core.config import Config

    cfg = Config.from_profile("tiny", runs_dir=str(tmp_path / "runs"))
    cfg.profile_dir.mkdir(parents=True)
    (cfg.profile_dir / "reward.json").write_text(json.dumps({"backend": "standin", "primary_axis": "CE"}))
    ratings = SimulatedStudy(n_prompts=6, seed=1).draw()
    key = pd.DataFrame({"stimulus": ["a", "b", "c", "d"], "system": ["base", "tuned"] * 2, "attempt": [1, 2, 2, 1],
                        "passed_filters": [True, True, False, True]})
    res = report.listening(cfg, ratings, True, key, tmp_path / "fig", n_sim=20, power_effects=[0.3, 0.9],
                           power_participants=[8, 16])
    names = {p.name for p in (tmp_path / "fig").iterdir()}
    assert {"listening_statistics_SIMULATED.csv", "listening_power_SIMULATED.csv", "listening_power_SIMULATED.png",
            "listening_filters.csv"} <= names and all(n.startswith("listening_") for n in names)
    stats_table = pd.read_csv(tmp_path / "fig" / "listening_statistics_SIMULATED.csv")
    assert (stats_table["data"] == "SIMULATED").all()
    note = stats_table.set_index("quantity").loc["mixed model: tuned - base", "note"]
    assert note.startswith(f"structure: {res['mixed_model']['structure']}")
    power = pd.read_csv(tmp_path / "fig" / "listening_power_SIMULATED.csv")
    assert sorted(set(power["effect"])) == [0.0, 0.3, 0.9] and (power["data"] == "SIMULATED").all()  # stated, plus 0
    assert set(power["participants"]) == {8, 16} and power["mc_se"].notna().all()
    assert pd.read_csv(tmp_path / "fig" / "listening_filters.csv").set_index("system").loc["all", "passed_filters"] == 3


def test_make_figures_redraws_power_with_the_notebooks_settings(tmp_path):
    """Settings given once (notebook 04) are kept with the study; a later call without them (make
    figures) uses those, not the defaults: the user's choice is never dropped."""
    from smart_core import report
    from smart_core.config import Config

    cfg = Config.from_profile("tiny", runs_dir=str(tmp_path / "runs"))
    (cfg.profile_dir / "study").mkdir(parents=True)
    assert report.power_settings(cfg, 12, [0.4], [9]) == (12, [0.4], [9])
    assert report.power_settings(cfg) == (12, [0.4], [9])
    assert report.power_settings(cfg, None, [0.7]) == (12, [0.7], [9])  # what is given wins, and is kept
    assert report.power_settings(cfg) == (12, [0.7], [9])


def test_loudness_match_gives_equal_rms_without_clipping():
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, s, (2, 1000)).astype(np.float32) for s in (0.05, 0.3)] + [np.zeros((2, 1000), np.float32)]
    out, level = loudness_match(clips)
    rms = [np.sqrt(np.mean(c ** 2)) for c in out[:2]]
    assert rms[0] == pytest.approx(rms[1], rel=1e-4) and rms[0] == pytest.approx(level, rel=1e-4)
    assert max(np.abs(c).max() for c in out) <= 0.99 + 1e-6 and not out[2].any()


# ------------------------------------------------------------------ a study folder with real audio
@pytest.fixture()
def study_dir(tmp_path, fixtures):
    r = FluidRenderer("timgm6mb")
    ids = ["s0000000a", "s0000000b", "s0000000c", "s0000000d"]
    (tmp_path / "stimuli").mkdir()
    (tmp_path / "private").mkdir()
    for sid in ids:  # one-second clips keep the browser test short
        save_wav(tmp_path / "stimuli" / f"{sid}.wav", r.render(fixtures / "a4_one_second.mid"), 48_000)
    pd.DataFrame({"stimulus": ids, "system": ["base", "tuned"] * 2, "prompt": ["p0", "p0", "p1", "p1"]}).to_csv(
        tmp_path / "private" / "key.csv", index=False)
    write_study_config(tmp_path, StudyConfig(stimuli=sorted(ids), seed=1))
    return tmp_path


def test_order_is_random_per_participant_and_reproducible():
    stimuli = [f"s{i:08x}" for i in range(15)]
    a, b = participant_order(stimuli, "alice", 0), participant_order(stimuli, "bob", 0)
    assert sorted(a) == stimuli and a != b and a == participant_order(stimuli, "alice", 0)


class FakeClock:
    """The server's clock, moved by hand: tests let a clip 'play' without waiting for it."""

    def __init__(self):
        self.time = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += dt.timedelta(seconds=seconds)


def rate_current(study: Study, clock: FakeClock, participant: str, rating: int = 5, comment: str = "") -> dict:
    """Play the participant's current excerpt to the end and rate it."""
    stimulus = study.state(participant)["next"]
    study.played(participant, stimulus)
    clock.advance(study.durations[stimulus])
    return study.rate(participant, stimulus, rating, comment)


def test_server_rules(study_dir):
    clock = FakeClock()
    study = Study(study_dir, clock=clock)
    state = study.start("p1")
    first = state["next"]
    with pytest.raises(ApiError, match="play the excerpt"):
        study.rate("p1", first, 5)
    study.played("p1", first)
    for bad in (0, 11, 5.5, "5", True, None):
        with pytest.raises(ApiError, match="whole number"):
            study.rate("p1", first, bad)
    with pytest.raises(ApiError, match="unknown stimulus"):
        study.played("p1", "../private/key")
    with pytest.raises(ApiError, match="unknown participant"):
        study.played("ghost", first)
    clock.advance(study.durations[first])
    assert study.rate("p1", first, 7)["done"] == 1
    with pytest.raises(ApiError, match="already rated"):
        study.rate("p1", first, 8)
    # a restarted server (new Study object, same database) continues where the participant stopped
    again = Study(study_dir).start("p1")
    assert again["done"] == 1 and again["next"] != first
    for path in ("private/key", "../private/key", "s0000000a/../../private/key"):
        with pytest.raises(ApiError):
            study.audio_path(path)


@pytest.fixture()
def running(study_dir):
    """The server object itself (tests may shorten its handler's timeout)."""
    srv = serve(study_dir, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def server(running, study_dir):
    return f"http://127.0.0.1:{running.server_address[1]}", study_dir


def _post(url, body, headers=None):
    req = urllib.request.Request(url, json.dumps(body).encode(), headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_rejections_and_no_leaks(server):
    url, study_dir = server
    html = urllib.request.urlopen(url + "/").read().decode()
    assert "tuned" not in html and "base" not in html.replace("database", "")
    assert _post(url + "/api/start", {"participant": "bad id!"})[0] == 400
    status, state = _post(url + "/api/start", {"participant": "p9"})
    assert status == 200 and "tuned" not in json.dumps(state)
    assert _post(url + "/api/rate", {"participant": "p9", "stimulus": state["next"], "rating": 99})[0] == 400
    req = urllib.request.Request(url + "/api/rate", b"not json", {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 400
    for path in ("/audio/../private/key.csv", "/private/ratings.sqlite", "/audio/s0000000a/../../study.json.wav"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path)
        assert err.value.code == 404
    assert urllib.request.urlopen(url + f"/audio/{state['next']}.wav").read()[:4] == b"RIFF"


def _chrome():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian chromium + chromium-driver not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_a_participant_completes_the_study_in_a_real_browser(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url, study_dir = server
    browser = _chrome()
    try:
        wait = WebDriverWait(browser, 20)
        browser.get(url)
        field = browser.find_element(By.ID, "participant")
        field.clear()
        field.send_keys("walker")
        browser.find_element(By.ID, "agree").click()
        browser.find_element(By.ID, "begin").click()

        def rate_current(value):
            wait.until(EC.visibility_of_element_located((By.ID, "audio")))
            button = browser.find_element(By.CSS_SELECTOR, f".rating[data-value='{value}']")
            assert not button.is_enabled()  # rating only after listening
            browser.execute_script("document.getElementById('audio').play()")
            wait.until(lambda d: button.is_enabled())
            button.click()
            browser.find_element(By.ID, "submit").click()

        rate_current(3)
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress-text"), "Excerpt 2 of 4"))
        rate_current(8)
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress-text"), "Excerpt 3 of 4"))
        browser.refresh()  # mid-study refresh: the id is remembered, the study continues at 3 of 4
        browser.find_element(By.ID, "agree").click()
        assert browser.find_element(By.ID, "participant").get_attribute("value") == "walker"
        browser.find_element(By.ID, "begin").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress-text"), "Excerpt 3 of 4"))
        rate_current(5)
        wait.until(EC.text_to_be_present_in_element((By.ID, "progress-text"), "Excerpt 4 of 4"))
        rate_current(10)
        wait.until(EC.visibility_of_element_located((By.ID, "thanks")))
    finally:
        browser.quit()
    table = export_ratings(study_dir)
    assert len(table) == 4 and table["stimulus"].is_unique and set(table["participant"]) == {"walker"}
    assert sorted(table["rating"]) == [3, 5, 8, 10]
    assert (table["play_count"] >= 1).all() and set(table["system"]) == {"base", "tuned"}


# ------------------------------------------------------------------ what a hostile tester tried
def _read_wav(path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
    return (pcm.T / 32767).astype(np.float32)


def test_stimulus_ids_are_secret_and_the_public_list_has_no_system_order(study_dir, tmp_path_factory, fixtures):
    first, second = draw_stimulus_ids(50), draw_stimulus_ids(50)
    assert len(set(first)) == 50 and not set(first) & set(second)
    audio = _read_wav(study_dir / "stimuli" / "s0000000a.wav")
    midi = (fixtures / "a4_one_second.mid").read_bytes()
    keys, folders = [], []
    for _ in range(2):  # the same seed twice
        folder = tmp_path_factory.mktemp("made")
        (folder / "stimuli").mkdir()
        (folder / "private" / "midi").mkdir(parents=True)
        rows = [{"system": system, "prompt": f"p{k}", "prompt_index": k, "attempt": 1, "passed_filters": True,
                 "seed": 100 + k, "midi": midi} for system in ("base", "tuned") for k in range(3)]  # base rows first
        key = write_stimuli(folder, rows, [audio * (1 + i / 10) for i in range(6)], 48_000, seed=0)
        text = (folder / "study.json").read_text()
        public = json.loads(text)
        assert set(public) == set(asdict(StudyConfig())) and public["seed"] == 0
        assert public["stimuli"] == sorted(key["stimulus"])  # sorted secret ids: no order by system
        assert "base" not in text and "tuned" not in text and "system" not in text
        assert sorted(p.stem for p in (folder / "stimuli").glob("*.wav")) == public["stimuli"]
        assert pd.read_csv(folder / "private" / "key.csv")[["stimulus", "system"]].equals(key[["stimulus", "system"]])
        assert Study(folder).durations  # a study the server can run
        keys.append(key)
        folders.append(folder)
    assert not set(keys[0]["stimulus"]) & set(keys[1]["stimulus"])  # same seed, new ids
    for (_, a), (_, b) in zip(keys[0].iterrows(), keys[1].iterrows()):  # the audio itself is reproducible
        assert (folders[0] / "stimuli" / f"{a.stimulus}.wav").read_bytes() == \
            (folders[1] / "stimuli" / f"{b.stimulus}.wav").read_bytes()


FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\t=1+1",
            "\r=1+1", "plain, with a comma", 'a "quote" inside']


def test_csv_export_neutralises_spreadsheet_formulas(study_dir, tmp_path):
    clock = FakeClock()
    study = Study(study_dir, clock=clock)
    for participant, comments in (("alice", FORMULAS[:4]), ("-bob", FORMULAS[4:])):
        study.start(participant)
        for comment in comments:
            rate_current(study, clock, participant, 5, comment)
    out = tmp_path / "ratings.csv"
    table = export_ratings(study_dir, out)
    assert sorted(table["comment"]) == sorted(FORMULAS)  # the analysis gets the comments as written
    assert set(table["participant"]) == {"alice", "-bob"}
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert {r["comment"] for r in rows} == {"'" + c if c[0] in "=+-@\t\r" else c for c in FORMULAS}
    assert {r["participant"] for r in rows} == {"alice", "'-bob"}
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for cell in r.values())


def test_export_needs_a_study_and_writes_a_header_when_nobody_rated(study_dir, tmp_path_factory, capsys):
    from smart_core.__main__ import main

    folder = tmp_path_factory.mktemp("not_a_study")
    with pytest.raises(FileNotFoundError, match="study.json") as err:
        export_ratings(folder / "missing", folder / "out.csv")
    assert "\n" not in str(err.value)
    write_study_config(folder, StudyConfig(stimuli=[]))
    with pytest.raises(FileNotFoundError, match="private/key.csv"):
        export_ratings(folder)
    assert main(["export", "--study", str(folder / "missing")]) == 2  # the command line: one line, no traceback
    said = capsys.readouterr()
    assert said.out == "" and said.err.count("\n") == 1 and "study.json" in said.err
    assert not (folder / "out.csv").exists() and not (folder / "ratings.csv").exists()
    assert main(["export", "--study", str(study_dir)]) == 0  # a study, no ratings yet
    assert "0 ratings ->" in capsys.readouterr().out
    assert (study_dir / "ratings.csv").read_text().strip() == ",".join(ratings.EXPORT_COLUMNS)


def test_every_field_is_checked_and_answered_with_a_json_error(server, monkeypatch):
    url, study_dir = server
    for participant in (10 ** 21, True, 123, None, ["a"], {"a": 1}, "cz\n", "x" * 65, ""):
        status, reply = _post(url + "/api/start", {"participant": participant})
        assert status == 400 and "participant id" in reply["error"], participant
    current = _post(url + "/api/start", {"participant": "p5"})[1]["next"]
    rate = {"participant": "p5", "stimulus": current, "rating": 5}
    for presented_at in ({}, [1], 5, "not-a-date; DROP TABLE", "2024-13-01T00:00:00", "2" * 100):
        status, reply = _post(url + "/api/rate", {**rate, "presented_at": presented_at})
        assert status == 400 and "presented_at" in reply["error"], presented_at
    for comment in ({}, [1], 5, None, "x" * 2001):
        status, reply = _post(url + "/api/rate", {**rate, "comment": comment})
        assert status == 400 and "comment" in reply["error"], comment
    for stimulus in ({}, [1], 7, None):
        for route in ("/api/played", "/api/rate"):
            status, reply = _post(url + route, {**rate, "stimulus": stimulus})
            assert status == 400 and reply["error"] == "unknown stimulus"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/api/state?participant=cz%0A")
    assert err.value.code == 400 and "participant id" in json.loads(err.value.read())["error"]
    with ratings.connect(ratings.db_path(study_dir)) as con:
        assert [r[0] for r in con.execute("SELECT id FROM participants")] == ["p5"]

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Study, "state", broken)  # any unexpected error: a 500 with JSON, not a dropped connection
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/api/state?participant=p5")
    assert err.value.code == 500 and json.loads(err.value.read()) == {"error": "internal server error"}


def _raw(port: int, head: str, body: bytes = b"", timeout: float = 5.0) -> bytes:
    """Send a hand-written request to 127.0.0.1 and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        reply = b""
        for _ in range(1000):  # bounded; each recv is bounded by the timeout
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
    return reply


def _status(reply: bytes) -> int | None:
    return int(reply.split()[1]) if reply else None


def test_request_bodies_are_bounded_and_slow_ones_dropped(running):
    port = running.server_address[1]
    post = f"POST /api/start HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: application/json\n"
    body = b'{"participant": "raw1"}'
    assert _status(_raw(port, post + f"Content-Length: {len(body)}\n", body)) == 200
    for header, expected in (("Content-Length: -1\n", 400), ("Content-Length: 5000000\n", 413),
                             ("Content-Length: ten\n", 400), ("Content-Length: 1_0\n", 400), ("", 411),
                             ("Transfer-Encoding: chunked\n", 411), ("Content-Length: 2\nContent-Length: 3\n", 400)):
        reply = _raw(port, post + header)  # no body sent: the answer must not wait for one
        assert _status(reply) == expected, header
        assert "error" in json.loads(reply.split(b"\r\n\r\n", 1)[1])

    running.RequestHandlerClass.timeout = 0.5
    threads = threading.active_count()
    started = time.monotonic()
    reply = _raw(port, post + "Content-Length: 100\n", b'{"partic')  # a body that never finishes
    assert reply == b"" and time.monotonic() - started < 4  # dropped after the handler's timeout
    for _ in range(40):  # and its thread is freed
        if threading.active_count() <= threads:
            break
        time.sleep(0.05)
    assert threading.active_count() <= threads
    assert _status(_raw(port, post + f"Content-Length: {len(body)}\n", body)) == 200


def test_cross_site_and_non_json_posts_are_refused(server):
    url, study_dir = server
    body = {"participant": "csrf1"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, reply = _post(url + "/api/start", body, {"Content-Type": content_type})
        assert status == 415 and "application/json" in reply["error"]
    port = int(url.rsplit(":", 1)[1])
    no_type = _raw(port, f"POST /api/start HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Length: 2\n", b"{}")
    assert _status(no_type) == 415
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port}.evil.example"):
        status, reply = _post(url + "/api/start", body, {"Content-Type": "application/json", "Origin": origin})
        assert status == 403 and "other sites" in reply["error"]
    own = {"Content-Type": "application/json; charset=utf-8", "Origin": url}
    assert _post(url + "/api/start", {"participant": "same1"}, own)[0] == 200
    with ratings.connect(ratings.db_path(study_dir)) as con:
        assert [r[0] for r in con.execute("SELECT id FROM participants")] == ["same1"]
    page = urllib.request.urlopen(url + "/").read().decode()
    assert page.count('method: "POST"') == 1  # every POST goes through api(), which sends JSON
    assert 'method: "POST", headers: {"Content-Type": "application/json"}' in page


def test_a_rating_needs_the_clip_to_have_had_time_to_play(server, study_dir):
    url, _ = server
    current = _post(url + "/api/start", {"participant": "p7"})[1]["next"]
    assert _post(url + "/api/played", {"participant": "p7", "stimulus": current})[0] == 200
    time.sleep(0.03)
    status, reply = _post(url + "/api/rate", {"participant": "p7", "stimulus": current, "rating": 5})
    assert status == 409 and "to the end" in reply["error"]

    clock = FakeClock()  # the same rule, timed by hand, for a second participant
    study = Study(study_dir, clock=clock)
    current = study.start("p8")["next"]
    with wave.open(str(study_dir / "stimuli" / f"{current}.wav")) as w:
        seconds = w.getnframes() / w.getframerate()
    assert study.durations[current] == pytest.approx(seconds) and seconds > 0.9  # from the WAV header
    study.played("p8", current)
    clock.advance(seconds / 2)
    study.played("p8", current)  # a second play does not move the start of the first
    clock.advance(seconds / 2 - 0.3)
    with pytest.raises(ApiError, match="to the end") as err:
        study.rate("p8", current, 5)
    assert err.value.status == 409
    clock.advance(0.1)  # within the tolerance of the clip's end
    assert study.rate("p8", current, 5, presented_at="2024-05-01T12:00:00.000Z")["done"] == 1
    assert export_ratings(study_dir)["presented_at"].tolist() == ["2024-05-01T12:00:00.000Z"]


OLD_SCHEMA = """
CREATE TABLE participants (id TEXT PRIMARY KEY, started_at TEXT NOT NULL, order_json TEXT NOT NULL);
CREATE TABLE plays (participant TEXT NOT NULL, stimulus TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (participant, stimulus));
CREATE TABLE ratings (participant TEXT NOT NULL, stimulus TEXT NOT NULL, rating INTEGER NOT NULL,
    comment TEXT, position INTEGER NOT NULL, presented_at TEXT, rated_at TEXT NOT NULL,
    PRIMARY KEY (participant, stimulus));
"""


def test_an_older_database_gains_the_play_start_column(study_dir):
    order = participant_order(json.loads((study_dir / "study.json").read_text())["stimuli"], "old", 1)
    con = sqlite3.connect(ratings.db_path(study_dir))
    con.executescript(OLD_SCHEMA)
    con.execute("INSERT INTO participants VALUES ('old', '2024-01-01T00:00:00+00:00', ?)", (json.dumps(order),))
    con.execute("INSERT INTO plays VALUES ('old', ?, 1)", (order[0],))
    con.commit()
    con.close()
    clock = FakeClock()
    study = Study(study_dir, clock=clock)
    with ratings.connect(study.db_path) as con:
        assert "first_played_at" in {r[1] for r in con.execute("PRAGMA table_info(plays)")}
    with pytest.raises(ApiError, match="once more"):  # played before start times were kept
        study.rate("old", order[0], 4)
    study.played("old", order[0])
    clock.advance(study.durations[order[0]])
    assert study.rate("old", order[0], 4)["done"] == 1
    assert export_ratings(study_dir)["play_count"].tolist() == [2]


def test_excerpts_are_rated_in_the_order_presented(study_dir):
    clock = FakeClock()
    study = Study(study_dir, clock=clock)
    current = study.start("p2")["next"]
    later = next(s for s in study.config.stimuli if s != current)
    with pytest.raises(ApiError, match="not your current") as err:
        study.played("p2", later)
    assert err.value.status == 409
    study.played("p2", current)
    clock.advance(5)
    with pytest.raises(ApiError, match="in the order given") as err:
        study.rate("p2", later, 5)
    assert err.value.status == 409
    assert study.rate("p2", current, 5)["done"] == 1


def test_serving_a_folder_that_is_not_a_study_says_what_is_missing(study_dir, tmp_path_factory):
    with pytest.raises(FileNotFoundError, match="study.json"):
        Study(tmp_path_factory.mktemp("empty"))
    (study_dir / "stimuli" / "s0000000b.wav").unlink()
    with pytest.raises(FileNotFoundError, match="s0000000b.wav"):  # found at start, not by a participant
        Study(study_dir)


def test_a_study_kept_under_a_folder_named_private_serves_audio(study_dir, tmp_path_factory):
    moved = tmp_path_factory.mktemp("outer") / "private" / "study"
    shutil.copytree(study_dir, moved)
    study = Study(moved)
    assert study.audio_path("s0000000a").read_bytes()[:4] == b"RIFF"
    for path in ("private/key", "../private/key", "s0000000a/../../private/key"):
        with pytest.raises(ApiError):
            study.audio_path(path)
    (moved / "private" / "leak.wav").write_bytes(b"RIFF")  # inside the study's own private/: never
    (moved / "stimuli" / "s0000000e.wav").symlink_to(moved / "private" / "leak.wav")
    study.stimuli.add("s0000000e")
    with pytest.raises(ApiError):
        study.audio_path("s0000000e")


def test_the_schema_is_defined_once(study_dir):
    import smart_core.listening as listening
    import smart_core.listening_app as listening_app
    import smart_core.stimuli as stimuli

    assert not hasattr(listening_app, "SCHEMA") and not hasattr(listening, "sqlite3") and not hasattr(stimuli, "sqlite3")
    assert listening_app.connect is ratings.connect
    Study(study_dir)
    with ratings.connect(ratings.db_path(study_dir)) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        plays = [r[1] for r in con.execute("PRAGMA table_info(plays)")]
    assert tables == {"participants", "plays", "ratings"}
    assert plays == ["participant", "stimulus", "count", "first_played_at"]


def test_stimuli_that_failed_the_filters_are_announced(study_dir, caplog):
    key_path = study_dir / "private" / "key.csv"
    key = pd.read_csv(key_path).assign(passed_filters=[True, False, False, True])
    key.to_csv(key_path, index=False)
    with caplog.at_level(logging.WARNING, logger="smart_core.listening_app"):
        serve(study_dir, "127.0.0.1", 0).server_close()
    lines = [r.getMessage() for r in caplog.records if "filters" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("2 of 4 stimuli did not pass the paper's filters (")
    with pytest.warns(UserWarning) as record:  # what make_stimuli says after generating
        warn_filter_failures(pd.read_csv(key_path))
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2 and messages[0].startswith("1 of 2 stimuli of system 'base' did not pass")
    assert messages[1].startswith("1 of 2 stimuli of system 'tuned' did not pass")
    caplog.clear()
    key.assign(passed_filters=True).to_csv(key_path, index=False)
    with caplog.at_level(logging.WARNING, logger="smart_core.listening_app"):
        Study(study_dir)
    assert not caplog.records and filter_failure_lines(pd.read_csv(key_path)) == []
