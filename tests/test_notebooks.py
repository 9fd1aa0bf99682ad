"""Every notebook executed once in FAST mode, and every layer read from that one execution.

`suite.run_chapter` runs each chapter's student edition with its answer cells filled from the solutions,
graded by the grader. From that one run: every check says *correct* and refuses its wrong answers (the
drift test), the metrics the notebook records are asserted (`CHECKS`; tolerances are FAST tolerances,
each justified next to its assertion), the cells tagged `nbval-check-output` print what the committed
notebook stores (nbval's stream merging and `tests/nbval_sanitize.cfg`), and the executed instructor
notebook is rebuilt into build/executed/ for the site test. `conftest.py` fails the session if any
notebook was executed twice.
"""

import math
from pathlib import Path

import pytest

from tcmax_lib.course import series, student, suite

ROOT = Path(__file__).resolve().parent.parent


def check_00(m):
    assert m["n_notebooks"] >= 5
    assert m["gaussian_mi_rho05"] == pytest.approx(0.1438, abs=1e-4)


def check_01(m):
    # MINE's gradient weight swings like the batch/critic partition ratio of the frozen critic (FAST: 5-95 % ranges
    # 0.72-1.30 and 0.74-1.38): the ranges agree within a factor of 2; right-skewed (median < 1, longer upper tail)
    w, frozen = m["mine_weight_quantiles"].values()
    assert 0.5 < (w[2] / w[0]) / (frozen[2] / frozen[0]) < 2.0
    assert frozen[1] < 1.0 and frozen[2] - frozen[1] > frozen[1] - frozen[0]
    # SMILE (tau = 5) at 10 nats with the exact critic: its population value (10^7 product samples, the same in FAST
    # and FULL) is 11.948 by an independent run (review of 2026-12-06, C1), so the clipping bias is ~1.95 nats;
    # the 10^7-sample Monte Carlo error is ~0.01. What a batch of 64 adds is small (review: 0.19 +- 0.05 over
    # 200 batches) and far below DV's own batch bias there (~1.48): SMILE does not inherit it
    parts = {k: v["10.0"] for k, v in m["smile_overshoot_parts"].items()}
    clip = parts["clipping bias (population - true)"]
    assert m["smile_population"]["10.0"] == pytest.approx(11.948, abs=0.05) and 1.85 < clip < 2.05
    b64 = parts["SMILE's batch bias, K = 64 (batch - population)"]
    assert abs(b64) < 0.5 and clip > 3 * abs(b64) and parts["DV's batch bias, K = 64"] > b64 + 0.5
    # the exact critic's batch DV at K = 16 and 4 nats is above 4 (review C3: 4.32; 200 batches, SE ~0.05)
    assert 4.1 < m["exact_critic_dv_k16"] < 4.6
    # MINE's weight against the frozen critic's ratio: the log range ratio printed in Appendix B
    assert 0.5 < m["mine_weight_range_ratio"] < 2.0
    # Exercise 1: the optimal critic is closed form and its batches seeded, so the answer is exact (the margins to
    # the 0.5-nat tolerance are 0.04 nats and more): InfoNCE follows the staircase up to 4 nats at K = 256, 2 at K = 64
    assert m["exercise1_infonce_follows_up_to"] == {"64": 2.0, "256": 4.0}
    log_k = math.log(64)
    s = m["staircase_concat"]
    # InfoNCE can never exceed log K = 4.159 on a batch (a property of the bound, any critic)
    assert max(s["infonce"].values()) <= log_k + 1e-6
    # even the short FAST schedule must climb: the 10-nat level sits > 2 nats above the 2-nat level
    for est in ("mine", "smile"):
        assert s[est]["10.0"] > s[est]["2.0"] + 2.0, est
    # optimal-critic table (no training, 200 batches): NWJ unbiased (SE ~0.02 at 2 nats), DV biased up at 10
    opt = m["optimal_critic"]
    assert opt["nwj"]["2.0"] == pytest.approx(2.0, abs=0.1)
    assert 3.9 < opt["infonce"]["10.0"] <= log_k
    assert opt["dv"]["10.0"] > 10.3
    # SMILE on the exact critic: clipping the partition scores at tau = 5 lowers the log-partition at 10 nats,
    # so SMILE sits above the (already upward-biased) minibatch DV; the gap is ~0.8 nats over 200 batches
    assert opt["smile"]["10.0"] > opt["dv"]["10.0"] + 0.3
    # the hand-written MINE loop and E.train_estimators run the same operations on the same seeds: identical
    assert m["hand_loop_vs_library"] < 1e-6
    # both DV trainings (biased and EMA-corrected) leave zero: a critic stuck at init has |bias| = 4 nats.
    # (Which one is closer is a measured result, reported in the notebook, not an assertion.)
    assert m["ema_abs_bias"] < 3.9 and m["biased_abs_bias"] < 3.9
    # finite-data over-fitting: the train estimate exceeds the held-out one
    assert m["overfit_train"] > m["overfit_test"]
    assert m["naive_overflow_is_inf"] and m["logspace_is_finite"]
    # precision (section 7): bf16 vs fp32 tail means on the same seeds (same weights and batches), compared
    # with 3 standard errors of the seed spread; every (estimator, level) pair must pass
    assert len(m["precision_within_3se"]) == 20 and all(m["precision_within_3se"].values())
    assert all(m["precision_se"][k] > 0 for k in m["precision_se"])
    # one vmapped call of the stacked critics = four calls: fp32 summation order only (scores O(1))
    assert m["stacked_vs_separate_scores"] < 1e-4


def check_02(m):
    # Exercise 2 (optimal critic, true TC 4, 30 batches in FAST): the repeated-index tuples pull the estimate down by
    # over a nat (measured: 2.83 against 4.00 over 200 batches); the distinct-index one stays near the truth (3.996)
    ex2 = {k: sum(v) / len(v) for k, v in m["exercise2_negatives"].items()}
    assert ex2["all K^3 tuples"] < 3.2 and abs(ex2["distinct indices"] - 4.0) < 0.25
    assert m["xor_tc_exact"] == pytest.approx(math.log(2), abs=1e-9)
    assert m["xor_tcne"] == pytest.approx(math.log(2), abs=0.12)  # 100-step window of a 64-sample DV estimate
    assert abs(m["xor_pairwise_dv"]) < 0.08
    assert m["decomposition_gap"] < 1e-9
    s = m["tc_staircase"]
    # FAST: 300 steps a level from a random critic; the estimate must rise with the truth and clearly
    # exceed what Bai et al. report at TC 10 for their best lower-bound estimator only in FULL mode
    assert s["10.0"] > s["6.0"] > s["2.0"] > 0.3
    assert s["10.0"] > 4.0
    assert m["logit_critic_equals_tcmax"] < 1e-4
    # Bai et al.'s configuration (4 x 20-d, two pairs), FAST: 300 steps a level, 2,048 sampled negatives;
    # both critic sizes must climb with the truth (the 10-nat level above the 2-nat level by > 1 nat)
    for row in m["bai_config"].values():
        assert row["true 10"] > row["true 2"] + 1.0


def check_03(m):
    bayes = m["bayes"]
    # joint training with a linear head cannot represent the XOR interaction: b2 accuracy ~ chance
    assert m["concat_joint_interaction"]["acc_interaction_b2"] < 0.6
    # a non-linear fusion head learns it under joint training, unimodal training cannot (0.5 = chance)
    assert m["mlp_joint"]["acc_interaction_b2"] > 0.85
    assert m["mlp_unimodal"]["acc_interaction_b2"] < 0.6
    # competition: the visual head of the joint model is worse than the unimodally trained one
    assert m["concat_joint"]["acc_visual_head"] < m["concat_unimodal"]["acc_visual_head"] - 0.02
    # 2,000 training samples, 15 epochs: within 0.03 of the Bayes accuracy, never meaningfully above it
    assert bayes["both"] - 0.03 < m["mlp_joint"]["acc"] <= bayes["both"] + 0.01
    assert m["concat_unimodal"]["acc_visual_head"] == pytest.approx(m["bayes_shared"]["visual"], abs=0.03)
    # the written-out step equals the trainer's (the trainer reorders the batch: float32 rounding; measured 3e-8)
    assert m["written_step_gap_joint"] < 1e-6 and m["written_step_gap_unimodal"] < 1e-6
    # the visual gradient is several times smaller under joint training (FAST: 0.17 and 0.14 of unimodal's), yet
    # under AdamW the visual encoder travels about as far (0.81 and 1.04): the reading's two points
    for sec in m["gradient_measurement"].values():
        grad = sec["visual gradient norm, joint / unimodal (mean over epochs)"]
        dist = sec["visual distance travelled, joint / unimodal (sum over epochs)"]
        assert grad < 0.4 and 0.5 < dist < 2.0
    series = m["gradient_series"]                                        # one value per epoch, every series
    assert all(len(v) == len(series["section 2"]["joint"]["grad_visual"]) for s in series.values()
               for r in s.values() for v in r.values())
    # Exercise 1: the closed form of audio's Bayes accuracy, Phi(m_a), at both margins; paired seeds recorded
    ex1 = m["exercise1_margin"]
    assert ex1["2.0"]["audio_bayes"] == pytest.approx(0.9772, abs=1e-4)
    assert ex1["1.0"]["audio_bayes"] == pytest.approx(0.8413, abs=1e-4)
    assert all(len(v["per_seed"]["joint"]["acc_visual_head"]) == len(v["seeds"]) == 2 for v in ex1.values())


def check_04(m):
    assert m["factorised_vs_brute"] < 1e-4
    assert m["public_code_finite_at_100"] is False and m["factorised_finite_at_1e3"] is True
    # one constant on a modality's logits changes neither loss (float64: equal to rounding); one offset per sample
    # (-2 to 2, B = 6) leaves cross-entropy unchanged and moves TCMax's shared batch x class normaliser
    off = m["offset_invariance"]
    ce, tc = off["cross-entropy"], off["TCMax"]
    assert ce["+ 5 on every audio logit"] == pytest.approx(ce["as is"], abs=1e-9)
    assert ce["+ one offset per sample (audio)"] == pytest.approx(ce["as is"], abs=1e-9)
    assert tc["+ 5 on every audio logit"] == pytest.approx(tc["as is"], abs=1e-9)
    assert abs(tc["+ one offset per sample (audio)"] - tc["as is"]) > 0.1   # measured on 5 random batches: 0.63-0.96
    res = m["toy_results"]
    # TCMax keeps the weak modality's head close to unimodal training, better than joint (FAST: 2 seeds)
    assert res["concat"]["tcmax"]["acc_visual_head"] > res["concat"]["joint"]["acc_visual_head"]
    # with the MLP head TCMax (pairwise form) still learns the interaction
    assert res["mlp"]["tcmax"]["acc_interaction_b2"] > 0.8
    # with a concat head no objective can: b2 = c_a xor c_v is not additive across modalities (chance = 0.5;
    # 10,000 test samples give SE 0.005, and a head that cannot represent XOR stays near chance)
    for method in ("joint", "unimodal", "tcmax"):
        assert res["concat_interaction"][method]["acc_interaction_b2"] < 0.6, method
    # the head theorem on random tables: float64 L-BFGS reaches both closed forms
    assert m["full_critic_gap"] < 1e-3 and m["additive_critic_gap"] < 1e-3
    # label measure: near the optimum the uniform-measure bound exceeds the batch-measure one by KL(p_y || u)
    # (0.249 nats at a class-1 share of ~0.17); 2 seeds x 10 epochs land within 0.1 of it (measured: 0.235)
    lp = m["label_prior_results"]["per_seed"]
    assert all(len(v) == len(m["label_prior_results"]["seeds"]) for p in lp.values() for v in p.values())
    est = "tc_estimate (last epoch, train)"
    gap = sum(lp["uniform"][est]) / len(lp["uniform"][est]) - sum(lp["batch"][est]) / len(lp["batch"][est])
    assert gap == pytest.approx(m["label_prior_kl"], abs=0.1)
    check_04_optimizer(m)


def check_04_optimizer(m):
    # every gradient x 0.2 for 300 steps. SGD: every step is 0.2 times as long, the runs end far apart (measured
    # relative distance ~0.5). AdamW with eps 1e-12: the scale cancels up to float32 rounding (measured ~3e-7).
    # AdamW with its default eps 1e-8: a remainder carried by weights whose gradients are ~eps/k (measured ~4e-3,
    # ~6 % of the weights). The bounds leave an order of magnitude on each side.
    sc = m["optimizer_scale_invariance"]
    rel = "|theta(k=0.2) - theta(k=1)| / |theta(k=1) - theta_0|"
    assert sc["sgd"][rel] > 0.1
    assert sc["adamw (eps 1e-12)"][rel] < 1e-5
    assert sc["adamw (eps 1e-12)"][rel] < sc["adamw (eps 1e-8, the default)"][rel] < 0.05
    mod = m["optimizer_modulation"]
    assert set(mod["per_seed"]) == {"sgd", "adamw"} and mod["selection_seed"] not in mod["seeds"]
    for opt_name, per in mod["per_seed"].items():
        assert mod["lr"][opt_name] in mod["lr_grid"][opt_name]
        assert len(mod["joint_val_acc_by_lr"][opt_name]) == len(mod["lr_grid"][opt_name])   # every rate's accuracy
        floor = "joint, other batch order"                              # the control: no modulation at all
        assert set(per) == {"joint", "ogm_ge", "ogm_ge_no_noise", "agm", "mmpareto", floor}
        assert min(per[floor]["visual_encoder_distance"]) > 0           # another batch order ends elsewhere
        for method, cols in per.items():                                # every per-seed value is stored
            assert all(len(v) == len(mod["seeds"]) for v in cols.values()), (opt_name, method)
        assert per["joint"]["visual_encoder_distance"] == [0.0] * len(mod["seeds"])
        # toy A: audio alone is near Bayes-optimal (0.977), every method and optimiser learns it
        assert all(min(cols["acc"]) > 0.9 for cols in per.values()), opt_name


def check_04_distributed(m):
    # one batch of 256 split into K shards: the mean per-process loss is a different objective. Its gradient
    # departs from the global-batch gradient as the local batch shrinks (measured: 0.01 at K=2, 0.46 at K=64)
    t = m["distributed_shard_table"]
    diff = t["|grad_K - grad_global| / |grad_global|"]
    assert diff["2"] < 0.05 and diff["64"] > 0.2
    assert diff["2"] < diff["8"] < diff["32"] < diff["64"]
    assert all(v == pytest.approx(t["global-batch TC estimate"]["2"]) for v in t["global-batch TC estimate"].values())


def check_05(m):
    # the official FSDD split (index 0-4 = test) and a 10 % stratified validation carve-out: exact counts
    assert m["sizes"] == {"train": 2430, "val": 270, "test": 300}
    # FAST trains on a stratified 960-pair subset: every digit is there, in its share (~96 each)
    counts = m["train_class_counts"]
    assert len(counts) == 10 and sum(counts) == 960 and min(counts) >= 80
    res = m["results"]   # the protocol's record: each method's rate from the grid, every seed's value
    assert set(res["per_seed"]) == {"joint", "unimodal", "ogm_ge", "tcmax"} and res["optimizer"] == "sgd"
    assert all(res["lr"][k] in res["lr_grid"] for k in res["per_seed"]) and res["selection_seed"] not in res["seeds"]
    for method, v in res["per_seed"].items():
        # FAST: 960 pairs, 6 epochs (90 steps). A model that knew only 5 digits would score <= 0.5 on the
        # 10-digit test set; every run must be above that (the image modality alone learns fast; FAST measured
        # 0.70-0.72 for OGM-GE, whose damping and noise slow the image branch, 0.89-0.93 for the others)
        assert min(v["acc"]) > 0.5 and len(v["acc"]) == len(res["seeds"]), method
        assert all(0.0 <= p <= 1.0 for p in v["probe_audio"] + v["probe_visual"]), method
    assert set(m["summary_av_digits_mean_and_95_t_interval"]) == set(res["per_seed"])
    p = m["powered"]                                                     # the main seeds first, at the chosen rates
    assert p["seeds"][:len(res["seeds"])] == res["seeds"] and p["lr"] == {k: res["lr"][k] for k in p["lr"]}
    assert all(len(v) == len(p["seeds"]) for k in p["per_seed"] for v in p["per_seed"][k].values())


def check_06(m):
    # the OGM-GE split puts 1001_DFA_HAP_XX and 1001_DFA_SAD_XX in test; 1 of the 4 others is validation
    assert m["sizes"] == {"train": 3, "val": 1, "test": 2}
    assert set(m["results"]) == {"joint", "unimodal", "ogm_ge", "tcmax"}
    for res in m["results"].values():  # 3 training clips, 2 epochs: a smoke run, only ranges are meaningful
        assert all(0.0 <= v <= 1.0 for v in res.values())


def check_07(m):
    # sampled negatives, 2,000 draws per N on a fixed batch: biased low at every N; the delta method's bias is
    # within 4 standard errors of the mean for N >= 16 and its spread within 10 % (N = 4 is outside its range)
    b = m["sampled_bias"]
    assert all(v < 0 for v in b["bias (measured)"].values())
    for n in ("16", "64", "256", "1024"):
        assert abs(b["z = (measured - delta) / s.e."][n]) < 4, n
        assert b["sd (measured)"][n] == pytest.approx(b["sd (delta method)"][n], rel=0.1), n
    # ... and at N = 256 the delta method is 2.1 s.e. off (one of five N beyond 2 s.e.: about what chance gives,
    # P = 1 - 0.954^5 = 0.21); the cell is the same in FAST and FULL (a fixed batch, seeded draws)
    assert b["z = (measured - delta) / s.e."]["256"] == pytest.approx(-2.14, abs=0.01)
    # the gradient, what training sees: the mean of 500 sampled gradients is resolved from the exact one only at
    # N = 4 (2.3 s.e.); at N >= 16 it is within 1.5 s.e. (the norm of a pure-noise mean is about 1 s.e.), while
    # one draw strays 8-19 times as far as the mean's error at every N: the noise, not the bias, is what differs
    gr = m["sampled_grad"]
    bias, se, noise = (gr[k] for k in ("bias of the mean gradient", "its s.e. (500 draws)", "noise of one draw"))
    assert bias["4"] > 2 * se["4"] and all(bias[n] < 1.5 * se[n] for n in ("16", "64", "256", "1024"))
    assert all(noise[n] > 8 * bias[n] for n in bias)
    methods = {"joint", "unimodal", "ogm_ge", "agm", "mla", "mmpareto", "pmr", "tcmax"}
    main = m["main"]
    assert set(main) == {"toy A", "toy B", "AV digits (hard)"} and "SGD" in m["protocol"]
    for name, r in main.items():   # the protocol's record: every method, its rate from the grid, every seed's value
        assert set(r["per_seed"]) == methods and r["optimizer"] == "sgd" and r["selection_seed"] not in r["seeds"]
        assert all(r["lr"][k] in r["lr_grid"] for k in methods), name
        assert all(len(v) == len(r["seeds"]) for s in r["per_seed"].values() for v in s.values()), name
        assert r["head"]["mla"] == "shared" and r["head"]["mmpareto"] == "concat_msh"
        for s in r["per_seed"].values():
            assert all(0.0 <= v <= math.log(2) + 1e-6 for v in s["js"]) and min(s["entropy_ratio"]) >= 1.0
    assert main["toy A"]["head"]["joint"] == "concat" and main["toy B"]["head"]["joint"] == "mlp"
    acc = {d: {k: r["per_seed"][k]["acc"] for k in methods} for d, r in main.items()}
    # toy A: audio alone is near Bayes-optimal (0.977), learned in a few epochs by every method (FAST: 0.972-0.985)
    assert all(min(v) > 0.95 for v in acc["toy A"].values())
    # toy B: the interaction bit b2 = c_a xor c_v is not additive across modalities. Methods whose prediction is
    # a sum of per-modality terms (unimodal, MLA's shared head, MMPareto's concat head) leave it at chance, so
    # their accuracy is at most P(b1 right) / 2 ~ 0.5 (FAST: 0.487-0.513); the MLP head can learn part of it in
    # FAST's 4 epochs (FAST means: joint 0.606, TCMax 0.607)
    for k in ("unimodal", "mla", "mmpareto"):
        assert max(acc["toy B"][k]) < 0.53, k
    for k in ("joint", "tcmax"):
        assert sum(acc["toy B"][k]) / len(acc["toy B"][k]) > 0.55, k
    # AV digits hard, FAST (500 pairs, 4 epochs): every run learns. Chance is 0.1 and on 300 test pairs its s.e. is
    # 0.017, so 0.15 is 3 s.e. above it; measured 0.207-0.537 (Intel Xeon; 6 epochs gave 0.287-0.647)
    assert all(min(v) > 0.15 for v in acc["AV digits (hard)"].values())
    # Fig. 3: the exact point is the main table's TCMax runs; the coverage of N draws with replacement from B^2
    for name, f in m["fig3"].items():
        assert f["per_seed"]["exact"] == main[name]["per_seed"]["tcmax"]["acc"] and f["lr"] == main[name]["lr"]["tcmax"]
        for n, c in f["coverage"].items():
            assert c == pytest.approx(1 - (1 - 1 / 64**2) ** int(n), rel=1e-12), n
    # the concat row of the head table is the main table's runs and rates; every other head chooses its own rates
    # on the selection seed from the same grid (a concat-chosen rate diverged with another head in a FULL run)
    av = main["AV digits (hard)"]
    heads = m["heads"]
    assert set(heads["per_seed"]) == set(heads["lr"]) == {"concat", "sum", "shared", "film", "gated"}
    assert heads["per_seed"]["concat"] == {k: av["per_seed"][k]["acc"] for k in ("joint", "tcmax")}
    assert heads["lr"]["concat"] == {k: av["lr"][k] for k in ("joint", "tcmax")}
    assert all(lr in av["lr_grid"] for h in heads["lr"].values() for lr in h.values())
    # Fig. 4: a gap per seed where it is read; every run reaches the common level by construction
    assert 0.0 < m["fig4"]["matched_val_acc"] <= 1.0
    for where in ("matched", "last"):
        assert all(len(v) == len(av["seeds"]) and all(-1.0 <= g <= 1.0 for g in v)
                   for v in m["fig4"]["gap"][where].values())
    # ... and reaches it before the StepLR drop: every run is read in the same phase (review N6)
    assert all(e < m["fig4"]["lr_step"] for v in m["fig4"]["matched_epoch"].values() for e in v)
    # each head's whole record is stored: validation curves per seed, so the learning-curve rules can be re-read
    for h, rec in heads["records"].items():
        assert all(len(c) == rec["epochs"] for v in rec["val_curve"].values() for c in v), h
    # every record carries its curves and says which rules it misses; curves have one value per epoch
    for name, r in main.items():
        assert set(r["val_curve"]) == methods and "curve_shortfalls" in r and "protocol_shortfalls" in r, name
        assert all(len(c) == r["epochs"] for v in r["val_curve"].values() for c in v), name
    # the control of the rate choice: the same seeds, each method at another rate of the grid, the one the
    # selection seed ranked next (FAST: the toys only)
    assert set(m["next_rate"]) == {"toy A", "toy B"}
    for name, nxt in m["next_rate"].items():
        r = main[name]
        assert nxt["seeds"] == r["seeds"] and set(nxt["lr"]) == methods, name
        for k, lr in nxt["lr"].items():
            val = {float(g): v for g, v in r["val_acc_by_lr"][k].items() if float(g) != r["lr"][k]}
            assert lr != r["lr"][k] and lr == min(val, key=lambda g: (-val[g], g)), (name, k)
    # the powered comparison: each comparison its own paired record, the main table's seeds first, then as many
    # more as its own question needs (capped), at the main table's rates; TCMax's runs are the same in each
    p = m["powered"]
    assert p["lr"] == {k: av["lr"][k] for k in ["tcmax", *p["family"]]} and set(p["comparisons"]) == set(p["family"])
    n = len(av["seeds"])
    for b, c in p["comparisons"].items():
        assert c["seeds"][:n] == av["seeds"] and n <= len(c["seeds"]) <= p["cap"], b
        assert len(c["seeds"]) == min(p["cap"], max(n, p["seeds_needed"][b])), b
        for k in ("tcmax", b):
            assert c["per_seed"][k]["acc"][:n] == av["per_seed"][k]["acc"], (b, k)
            assert all(len(v) == len(c["seeds"]) for v in c["per_seed"][k].values()), (b, k)
    longest = max(p["comparisons"].values(), key=lambda c: len(c["seeds"]))["per_seed"]["tcmax"]["acc"]
    assert all(c["per_seed"]["tcmax"]["acc"] == longest[:len(c["seeds"])] for c in p["comparisons"].values())


CHECKS = {"00": check_00, "01": check_01, "02": check_02, "03": check_03,
          "04": lambda m: (check_04(m), check_04_distributed(m)), "05": check_05,
          "06": check_06, "07": check_07}
NOTEBOOKS = series.notebooks()


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_runs_without_an_error(nb, chapters):
    """The grader runs on after a failing cell (a student's error must not cost the later exercises); the
    series' own notebooks may have none."""
    assert not chapters.get(nb).errors, f"{nb.name}: " + "; ".join(chapters.get(nb).errors)


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_check_passes_with_the_solutions_and_refuses_wrong_answers(nb, chapters):
    rows = chapters.get(nb).rows
    keys = [r["exercise"] for r in rows]
    assert [(r["exercise"], r["outcome"]) for r in rows] == [(k, "correct") for k in keys], \
        f"{nb.name}: {[r for r in rows if r['outcome'] != 'correct']}"
    outcomes = [(r["exercise"], w, o) for r in rows for w, o in r.items() if w.startswith("wrong ")
                and not w.endswith("message")]
    accepted = [(k, w) for k, w, o in outcomes if o != "not yet"]
    assert not accepted, f"{nb.name}: wrong answers the checks accept: {accepted}"
    for r in rows:                                       # what the student is told: the hint, never the answer
        hint = student.xs.exercises()[r["exercise"]].hint
        for w in (k for k in r if k.startswith("wrong ") and k.endswith("message")):
            assert hint in r[w] and "expected value is" not in r[w], (r["exercise"], r[w])


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_recorded_metrics(nb, chapters):
    metrics = chapters.get(nb).metrics
    assert metrics.get("_fast") is True, f"{nb.name}: recorded no FAST metrics"
    CHECKS[nb.stem[:2]](metrics)


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_are_what_the_cells_print(nb, chapters):
    assert not suite.output_mismatches(nb, chapters.get(nb).executed, ROOT / "tests" / "nbval_sanitize.cfg")
