import numpy as np
import pytest
import pandas as pd

from smart_core.stats import bootstrap_ci, claims_table, cliffs_delta, compare


def test_cliffs_delta():
    assert cliffs_delta([5, 6, 7], [1, 2, 3]) == 1.0
    assert cliffs_delta([1, 2, 3], [5, 6, 7]) == -1.0
    assert cliffs_delta([1, 2], [1, 2]) == 0.0


def test_the_unpaired_comparison_finds_a_real_shift_and_not_a_null_one():
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


def test_bootstrap_ci_covers_the_estimate():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 1, 100), rng.normal(0, 1, 100)
    lo, hi = bootstrap_ci(a, b, n_boot=300)
    assert lo < cliffs_delta(a, b) < hi


# ------------------------------------------------------------------------------------------------ paired

from scipy.stats import wilcoxon  # noqa: E402

from smart_core.stats import PAIRED_TEST, VERDICTS, compare_paired, judge, rank_biserial  # noqa: E402


def _pairs(shift, n=60, seeds=(0, 1, 2), constant_velocity=True, seed_shift=None):
    """(seed, base, tuned) tables as evaluate writes them: row i of both is prompt i."""
    rng = np.random.default_rng(42)
    out = []
    for s in seeds:
        prompts = [f"p{s}-{i}" for i in range(n)]
        notes = rng.normal(30, 6, n)
        base = pd.DataFrame({"prompt": prompts, "n_notes": notes, "velocity_mean": 90.0 if constant_velocity else rng.normal(80, 5, n),
                             "pitch_range": rng.normal(20, 4, n), "standin": rng.normal(0.5, 0.1, n)})
        delta = shift if seed_shift is None else seed_shift[s]
        tuned = pd.DataFrame({"prompt": prompts, "n_notes": notes + delta + rng.normal(0, 2, n),
                              "velocity_mean": base["velocity_mean"] + (0 if constant_velocity else rng.normal(0, 1, n)),
                              "pitch_range": base["pitch_range"] + rng.normal(0, 3, n),
                              "standin": base["standin"] + 0.05 + rng.normal(0, 0.02, n)})
        out.append((s, base, tuned))
    return out


def test_rank_biserial_matches_its_definition():
    d = np.array([3.0, -1.0, 2.0, 0.0, 5.0])
    ranks = {3.0: 4, -1.0: 2, 2.0: 3, 0.0: 1, 5.0: 5}  # ranks of |d|, the tie (zero) included (Pratt)
    plus = sum(r for v, r in ranks.items() if v > 0)
    assert rank_biserial(d) == (plus - 2) / 15
    assert rank_biserial([0, 0]) == 0.0
    # ties pull the effect towards 0: one changed pair among many tied ones is no large effect
    assert rank_biserial([1.0] + [0.0] * 9) == pytest.approx(10 / 55)


def test_the_paired_test_is_wilcoxon_on_the_pooled_differences():
    pairs = _pairs(shift=2.0)
    stats = compare_paired(pairs, ["n_notes", "pitch_range"], n_boot=200).set_index("measure")
    d = np.concatenate([t["n_notes"] - b["n_notes"] for _, b, t in pairs])
    assert stats.loc["n_notes", "p"] == wilcoxon(d, zero_method="pratt").pvalue
    assert stats.loc["n_notes", "test"] == PAIRED_TEST and stats.loc["n_notes", "n_pairs"] == 180
    assert stats.loc["n_notes", "effect_ci_low"] <= stats.loc["n_notes", "rank_biserial"] <= stats.loc["n_notes", "effect_ci_high"]
    assert stats.loc["n_notes", "seeds_in_direction"] == "3/3"
    assert (stats["p_adjusted"] >= stats["p"]).all()


def test_pairing_finds_a_shift_the_unpaired_test_misses():
    # a 1-note shift under 6 notes of between-prompt spread: visible only through the pairs
    pairs = _pairs(shift=1.0)
    paired = compare_paired(pairs, ["n_notes"], n_boot=100).set_index("measure")
    base = pd.concat([b for _, b, _ in pairs]); tuned = pd.concat([t for _, _, t in pairs])
    unpaired = compare(base, tuned, ["n_notes"], n_boot=100).set_index("measure")
    assert paired.loc["n_notes", "p"] < 1e-6 < 0.05 < unpaired.loc["n_notes", "p"]


def test_unpaired_tables_are_refused():
    (s, base, tuned), *_ = _pairs(shift=1.0)
    import pytest

    with pytest.raises(ValueError, match="not paired"):
        compare_paired([(s, base, tuned.iloc[::-1].reset_index(drop=True))], ["n_notes"])


def test_verdicts_come_from_the_data():
    stats = compare_paired(_pairs(shift=2.0), ["standin", "n_notes", "velocity_mean", "pitch_range"], n_boot=200)
    claims = claims_table(stats, "standin").set_index("measure")
    assert claims.loc["standin", "verdict"] == "agrees"
    assert set(claims["verdict"]) <= set(VERDICTS)
    assert claims.loc["n_notes", "verdict"] == "agrees"
    # constant velocity in every base and tuned output: nothing to test, and the reason says what the data hold
    assert claims.loc["velocity_mean", "verdict"] == "not testable here"
    assert "90" in claims.loc["velocity_mean", "reason"] and "100%" in claims.loc["velocity_mean", "reason"]
    assert claims["holm_family"].eq(4).all()  # Holm over the claims' own measures
    assert claims.loc["pitch_range", "verdict"] == "inconclusive"


def test_a_direction_not_held_by_every_seed_is_inconclusive():
    stats = compare_paired(_pairs(shift=0, seed_shift={0: 4.0, 1: 4.0, 2: -1.5}), ["n_notes"], n_boot=100)
    row = stats.iloc[0]
    assert row["p_adjusted"] < 0.05 and row["seeds_in_direction"] == "2/3"
    verdict, reason = judge(row, +1)
    assert verdict == "inconclusive" and "2 of 3 seeds" in reason


def test_a_count_and_its_rate_per_second_are_both_judged():
    pairs = []
    for s, base, tuned in _pairs(shift=3.0):
        # more notes, but in pieces twice as long: fewer notes per second
        base = base.assign(notes_per_second=base["n_notes"] / 5.0)
        tuned = tuned.assign(notes_per_second=tuned["n_notes"] / 10.0)
        pairs.append((s, base, tuned))
    claims = claims_table(compare_paired(pairs, ["n_notes", "notes_per_second"], n_boot=100), "standin")
    row = claims.set_index("measure").loc["n_notes"]
    assert row["verdict"] == "agrees" and row["per_second_verdict"] == "opposite"
    assert "per second of audio: opposite" in row["reason"]


def test_a_constant_base_that_tuning_moves_is_tested_not_hidden():
    pairs = [(s, b, t.assign(velocity_mean=t["velocity_mean"] - 10 + np.random.default_rng(s).normal(0, 2, len(t))))
             for s, b, t in _pairs(shift=0.0)]
    claims = claims_table(compare_paired(pairs, ["standin", "velocity_mean"], n_boot=100), "standin").set_index("measure")
    row = claims.loc["velocity_mean"]
    assert row["verdict"] == "agrees" and "the base outputs hold one value (90) in 100%" in row["reason"]


def test_a_constant_base_that_tuning_does_not_move_is_not_testable():
    # the small profile's velocities: one value in the base outputs, a few tuned outputs off it, no shift
    def jitter(t, s):
        rng = np.random.default_rng(s)
        off = rng.random(len(t)) < 0.15
        return t.assign(velocity_mean=t["velocity_mean"] + np.where(off, rng.choice([-4.0, 4.0], len(t)), 0.0))
    pairs = [(s, b, jitter(t, s)) for s, b, t in _pairs(shift=0.0)]
    claims = claims_table(compare_paired(pairs, ["standin", "velocity_mean"], n_boot=100), "standin").set_index("measure")
    row = claims.loc["velocity_mean"]
    assert row["verdict"] == "not testable here"
    assert "hold one value (90) in 100%" in row["reason"] and "did not move it" in row["reason"]


def test_holm_is_applied_over_the_claims_not_over_every_feature():
    pairs = _pairs(shift=2.0)
    few = compare_paired(pairs, ["standin", "n_notes"], n_boot=50)
    extra = {f"noise_{i}": None for i in range(8)}
    many_pairs = [(s, b.assign(**{k: np.arange(len(b), dtype=float) for k in extra}),
                   t.assign(**{k: np.arange(len(t), dtype=float) + 0.5 for k in extra})) for s, b, t in pairs]
    many = compare_paired(many_pairs, ["standin", "n_notes", *extra], n_boot=50)
    a = claims_table(few, "standin").set_index("measure")["p_adjusted"]
    b = claims_table(many, "standin").set_index("measure")["p_adjusted"]
    pd.testing.assert_series_equal(a, b)


def test_holm_equals_statsmodels_and_keeps_the_input_order():
    from statsmodels.stats.multitest import multipletests

    from smart_core.stats import holm

    rng = np.random.default_rng(3)
    for p in [rng.uniform(0, 0.2, 7), np.array([0.04, 0.01, 0.04, 1.0, 0.0]), np.array([0.3])]:
        np.testing.assert_array_equal(holm(p), multipletests(p, method="holm")[1])


def test_the_vectorised_rank_biserial_equals_the_pairwise_one_ties_and_all_zero_rows_included():
    from smart_core.stats import rank_biserial, rank_biserial_rows

    rng = np.random.default_rng(4)
    rows = np.vstack([rng.integers(-2, 3, (20, 15)).astype(float), np.zeros((1, 15)), rng.normal(size=(5, 15))])
    np.testing.assert_array_equal(rank_biserial_rows(rows), [rank_biserial(r) for r in rows])


def test_a_count_claim_says_when_the_token_budget_bounds_it():
    from smart_core.stats import budget_note

    assert budget_note(0.4, 1.0, 256, 256) == ""  # most base completions ended with EOS: no bound to report
    note = budget_note(0.99, 1.0, 256, 256)
    assert "99% of base and 100% of tuned completions reached the 256-token budget" in note
    pairs = [(s, b.assign(notes_per_second=b["n_notes"] / 5.0), t.assign(notes_per_second=t["n_notes"] / 5.0))
             for s, b, t in _pairs(shift=2.0)]
    claims = claims_table(compare_paired(pairs, ["standin", "n_notes", "notes_per_second", "pitch_range"], n_boot=50),
                          "standin", budget=note).set_index("measure")
    assert claims.loc["n_notes", "reason"].endswith(note)
    assert note not in claims.loc["standin", "reason"] and note not in claims.loc["pitch_range", "reason"]
