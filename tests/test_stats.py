import numpy as np
import pandas as pd

from smart_core.stats import bootstrap_ci, claims_table, cliffs_delta, compare


def test_cliffs_delta():
    assert cliffs_delta([5, 6, 7], [1, 2, 3]) == 1.0
    assert cliffs_delta([1, 2, 3], [5, 6, 7]) == -1.0
    assert cliffs_delta([1, 2], [1, 2]) == 0.0


def test_compare_and_claims_find_a_real_shift_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"n_notes": rng.normal(30, 5, 200), "empty_beat_rate": rng.uniform(0, 0.5, 200),
                         "pitch_range": rng.normal(20, 5, 200), "standin": rng.normal(5, 1, 200)})
    tuned = pd.DataFrame({"n_notes": rng.normal(40, 5, 200), "empty_beat_rate": rng.uniform(0, 0.5, 200),
                          "pitch_range": rng.normal(20, 5, 200), "standin": rng.normal(6, 1, 200)})
    stats = compare(base, tuned, ["n_notes", "empty_beat_rate", "pitch_range", "standin"], n_boot=200)
    row = stats.set_index("measure")
    assert row.loc["n_notes", "p_adjusted"] < 1e-6 and row.loc["n_notes", "delta_ci_low"] > 0.5
    assert row.loc["empty_beat_rate", "p_adjusted"] > 0.05
    assert (stats["p_adjusted"] >= stats["p"]).all()  # Holm never lowers p
    claims = claims_table(stats, "standin").set_index("measure")
    assert claims.loc["n_notes", "verdict"] == "agrees"
    assert claims.loc["standin", "verdict"] == "agrees"
    assert claims.loc["empty_beat_rate", "verdict"] == "inconclusive"


def test_bootstrap_ci_covers_the_estimate():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 1, 100), rng.normal(0, 1, 100)
    lo, hi = bootstrap_ci(a, b, n_boot=300)
    assert lo < cliffs_delta(a, b) < hi
