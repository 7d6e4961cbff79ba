"""Listening study: statistics on simulated data, the server's rules, and a real headless browser."""

import json
import shutil
import threading
import urllib.request

import numpy as np
import pandas as pd
import pytest

from smart_core.listening import (SimulatedStudy, StudyConfig, analyze_ratings, export_ratings, loudness_match,
                                  power_curve, write_study_config)
from smart_core.listening_app import Study, participant_order, serve
from smart_core.render import FluidRenderer, save_wav


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


def test_no_effect_gives_no_systematically_small_p():
    ps = [analyze_ratings(SimulatedStudy(effect=0.0, seed=s).draw())["mixed_model"]["p"] for s in range(12)]
    assert np.mean(np.array(ps) < 0.05) <= 0.25 and np.median(ps) > 0.2


def test_power_grows_with_participants():
    curve = power_curve(0.8, 1.0, 0.36, 2.25, participants=(4, 30), n_sim=40, seed=0)
    assert curve["power"].iloc[1] > curve["power"].iloc[0] and curve["power"].iloc[1] > 0.8


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


def test_server_rules(study_dir):
    from smart_core.listening_app import ApiError

    study = Study(study_dir)
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
def server(study_dir):
    srv = serve(study_dir, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", study_dir
    srv.shutdown()
    srv.server_close()


def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
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
