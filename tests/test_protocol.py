"""The evidence protocol (tcmax_lib.protocol): rate selection on validation, paired seeds, stored per-seed values."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from tcmax_lib import experiments, protocol, readings, reruns, stats
from tcmax_lib.data.toy import ToyConfig, make_toy_splits
from tcmax_lib.methods import make_method
from tcmax_lib.models import mlp_pair_model
from tcmax_lib.train import TrainConfig, TrainingDivergedError, fit

CFG = ToyConfig(interaction=False)
CONFIG = TrainConfig(epochs=3, batch_size=64, optimizer="sgd", lr=0.1, progress=False)


def splits(seed):
    return make_toy_splits(CFG, n_train=256, n_val=128, n_test=256, seed=seed)


def model(head, seed):
    return mlp_pair_model(CFG.dims, CFG.num_classes, head=head, hidden=16, feat=8, seed=seed)


def test_protocol_is_checked_and_names_its_shortfalls():
    with pytest.raises(ValueError, match="selection_seed=1 is also a reported seed"):
        protocol.Protocol((0.01, 0.1), (0, 1), selection_seed=1)
    with pytest.raises(ValueError, match="each once"):
        protocol.Protocol((0.01, 0.01), (0,))
    with pytest.raises(ValueError, match="lr"):
        protocol.Protocol((0.0, 0.1), (0,))
    p = protocol.Protocol((0.1, 0.01), (3, 4))
    assert p.lr_grid == (0.01, 0.1)                                      # sorted: ties go to the smaller rate
    assert p.shortfalls() == ["2 learning rates (the rule: at least 3)", "2 reported seeds (the rule: at least 5)"]
    full = protocol.Protocol((0.01, 0.03, 0.1), tuple(range(5)))
    assert full.shortfalls() == []
    assert protocol.Protocol((0.01, 0.02, 0.05), tuple(range(5))).shortfalls() == [
        "the grid spans 5x (the rule: at least 10x)"]


def test_select_lr_is_the_argmax_of_validation_accuracy_written_out():
    p = protocol.Protocol((0.003, 0.03, 0.3), (0,), selection_seed=7)
    got = protocol.select_lr("joint", splits, lambda s: model("concat", s), CONFIG, p)
    data = splits(7)
    slow = {}
    for lr in p.lr_grid:                                                 # the obvious loop
        _, hist = fit(model("concat", 7), make_method("joint"), data.train, data.val, replace(CONFIG, lr=lr, seed=7))
        slow[lr] = float(hist["val_acc"].max())
    assert got.val_acc == slow
    best = max(slow.values())
    assert got.lr == min(lr for lr, v in slow.items() if v == best)     # the smaller rate on a tie
    assert got.epochs == 3 and set(got.best_epoch) == set(p.lr_grid)


def test_select_lr_never_chooses_a_rate_that_diverges_and_stops_if_all_do():
    p = protocol.Protocol((0.03, 1e9), (0,))
    got = protocol.select_lr("joint", splits, lambda s: model("concat", s), CONFIG, p)
    assert got.val_acc[1e9] == -math.inf and got.lr == 0.03 and got.at_edge
    with pytest.raises(TrainingDivergedError, match="every learning rate"):
        protocol.select_lr("joint", splits, lambda s: model("concat", s), CONFIG, protocol.Protocol((1e9, 1e10), (0,)))


def test_compare_runs_the_chosen_rate_on_paired_seeds_and_stores_every_value():
    p = protocol.Protocol((0.01, 0.1), (0, 1), selection_seed=9)
    comp = protocol.compare(["joint", "mmpareto"], splits, model, "concat", CONFIG, p, keep="none")
    assert comp.results.groupby("method")["head"].first().to_dict() == {"joint": "concat", "mmpareto": "concat_msh"}
    # the reported runs are run_grid at the chosen rate, seed for seed
    lr = comp.choices["joint"].lr
    ref, _ = experiments.run_grid(["joint"], [0, 1], splits, lambda s: model("concat", s), replace(CONFIG, lr=lr),
                                  keep="none")
    rec = json.loads(json.dumps(comp.record(["acc", "acc_visual_head"])))          # survives JSON
    assert rec["per_seed"]["joint"]["acc"] == pytest.approx(ref["acc"].tolist(), abs=0)
    assert rec["lr"]["joint"] == lr and rec["seeds"] == [0, 1] and rec["selection_seed"] == 9
    assert rec["optimizer"] == "sgd" and set(rec["val_acc_by_lr"]["joint"]) == {"0.01", "0.1"}
    assert rec["protocol_shortfalls"] and rec["head"]["mmpareto"] == "concat_msh"
    # every run's validation curve is stored, selection runs per rate too, and the record judges itself
    assert [len(c) for c in rec["val_curve"]["joint"]] == [3, 3]
    assert set(rec["selection_val_curve"]["joint"]) == {"0.01", "0.1"}
    assert rec["curve_shortfalls"] == protocol.curve_shortfalls(rec)
    back = protocol.frame(rec)
    assert len(back) == 4 and back.set_index(["method", "seed"]).loc[("joint", 1), "acc"] == ref["acc"].iloc[1]
    # given rates skip the selection
    again = protocol.compare(["joint"], splits, model, "concat", CONFIG, p, lr={"joint": 0.05}, keep="none")
    assert again.choices["joint"].lr == 0.05 and again.choices["joint"].val_acc == {}
    with pytest.raises(ValueError, match="unknown method"):
        protocol.compare(["joint", "nope"], splits, model, "concat", CONFIG, p)
    with pytest.raises(ValueError, match="no column"):
        comp.record(["no_such_metric"])


def test_method_config_changes_what_some_methods_report_and_nothing_else():
    p = protocol.Protocol((0.01, 0.1), (0, 1), selection_seed=9)
    quiet = replace(CONFIG, track_train=False)
    comp = protocol.compare(["joint", "tcmax"], splits, model, "concat", quiet, p, keep="all",
                            method_config={"tcmax": {"track_train": True}})
    assert "train_acc" in comp.runs[("tcmax", 1)].history and "train_acc" not in comp.runs[("joint", 1)].history
    plain = protocol.compare(["joint", "tcmax"], splits, model, "concat", quiet, p, keep="none")
    for m in ("joint", "tcmax"):                                         # the same runs: only the reports differ
        assert comp.record(["acc"])["per_seed"][m] == plain.record(["acc"])["per_seed"][m]
    with pytest.raises(ValueError, match=r"field\(s\) \['lr'\] that change training"):
        protocol.compare(["joint"], splits, model, "concat", quiet, p, method_config={"joint": {"lr": 1.0}})
    with pytest.raises(ValueError, match=r"method\(s\) \['mla'\] not compared"):
        protocol.compare(["joint"], splits, model, "concat", quiet, p, method_config={"mla": {"track_train": True}})


def test_verdict_is_the_best_set_and_readings_against_the_reference():
    rec = {"seeds": [0, 1, 2, 3, 4], "per_seed": {
        "joint": {"acc": [0.80, 0.82, 0.79, 0.81, 0.80]},
        "tcmax": {"acc": [0.81, 0.83, 0.80, 0.82, 0.81]},               # +0.01 on every seed: resolved
        "ogm_ge": {"acc": [0.70, 0.90, 0.75, 0.85, 0.80]}}}              # same mean as joint, noisy
    v = protocol.verdict(rec)
    assert v["best"] == readings.best_set({m: c["acc"] for m, c in rec["per_seed"].items()})
    assert "tcmax" in v["best"] and "joint" not in v["best"]
    r = v["minus_joint"]["tcmax"]
    assert r.diff.mean == pytest.approx(0.01) and r.diff.half_width == pytest.approx(0.0, abs=1e-12)
    assert r.verdict == readings.ABOVE and r.family == 2
    assert v["minus_joint"]["ogm_ge"].verdict == readings.UNRESOLVED
    assert protocol.verdict(rec, margin=0.5)["minus_joint"]["ogm_ge"].verdict == readings.EQUIVALENT
    with pytest.raises(ValueError, match="reference 'unimodal'"):
        protocol.verdict(rec, reference="unimodal")


def test_choice_and_difference_frames_read_the_record():
    rec = {"lr_grid": [0.01, 0.1, 1.0], "epochs": 10, "seeds": [0, 1, 2], "selection_seed": 9,
           "lr": {"joint": 0.1, "tcmax": 1.0, "given": 0.1},
           "val_acc_by_lr": {"joint": {"0.01": 0.5, "0.1": 0.7, "1": 0.6},
                             "tcmax": {"0.01": 0.5, "0.1": 0.6, "1": 0.8}, "given": {}},
           "selection_best_epoch": {"joint": 4, "tcmax": 9, "given": -1},
           "per_seed": {"joint": {"acc": [0.70, 0.72, 0.71], "best_epoch": [9.0, 3.0, 9.0]},
                        "tcmax": {"acc": [0.75, 0.78, 0.76], "best_epoch": [5.0, 5.0, 5.0]},
                        "given": {"acc": [0.70, 0.73, 0.70], "best_epoch": [1.0, 1.0, 1.0]}}}
    ch = protocol.choice_frame(rec)
    assert ch.loc["joint", "val acc per lr"] == "0.500 / 0.700 / 0.600" and not ch.loc["joint", "at grid edge"]
    assert ch.loc["tcmax", "at grid edge"] and ch.loc["tcmax", "best epoch (selection)"] == "10 of 10"
    assert ch.loc["joint", "seeds best at last epoch"] == "2 of 3" and ch.loc["given", "val acc per lr"] == "given"
    assert ch.loc["joint", "lead over next rate"] == "+0.100" and ch.loc["tcmax", "lead over next rate"] == "+0.200"
    assert ch.loc["given", "lead over next rate"] == "-"
    fallback = {**rec, "lr": {**rec["lr"], "tcmax": 0.1}, "diverged_reported": {"tcmax": {"1": "diverged"}}}
    assert protocol.choice_frame(fallback).loc["tcmax", "lead over next rate"] == "+0.100"   # 1.0 was given up
    diff = protocol.difference_frame(rec, ["acc"])
    d = stats.paired_difference(rec["per_seed"]["tcmax"]["acc"], rec["per_seed"]["joint"]["acc"])
    assert diff.loc["tcmax", "acc"] == f"{d.mean:+.3f} ± {d.half_width:.3f} (above)" and d.side == "> 0"
    assert diff.loc["given", "acc"].endswith("(not resolved)") and set(diff.index) == {"tcmax", "given"}
    assert stats.Interval(-0.2, -0.3, -0.1, 3).side == "< 0"
    sub = protocol.subject_frame(rec, ["acc"], "tcmax")          # TCMax minus each other method: one family of 2
    fam = readings.read_family({m: (rec["per_seed"]["tcmax"]["acc"], rec["per_seed"][m]["acc"])
                                for m in ("joint", "given")})
    assert list(sub.index) == ["tcmax - joint", "tcmax - given"] and fam["joint"].family == 2
    assert sub.loc["tcmax - joint", "acc"] == fam["joint"].short() and fam["joint"].diff.mean == pytest.approx(0.16 / 3)
    with pytest.raises(KeyError, match="'mla' is not a method"):
        protocol.subject_frame(rec, ["acc"], "mla")
    # the learning-curve and grid rules, in words: TCMax chose the top rate and peaked at its last epoch;
    # joint meets both rules; a given rate (no grid searched) is not judged
    old = ["tcmax: rate 1 at the top of the grid", "tcmax: the selection run was best at its last epoch (10 of 10)"]
    assert protocol.curve_shortfalls(rec) == old + [
        "no validation curves stored: the tail rule cannot be checked (a record from before it)"]
    flat = [0.5, 0.6, 0.7, 0.7, 0.7, 0.71, 0.7, 0.7, 0.71, 0.7]
    rising = [0.5, 0.6, 0.62, 0.64, 0.66, 0.68, 0.70, 0.72, 0.74, 0.76]
    curves = {"joint": [flat, flat[:-1] + [0.69], flat[:-1] + [0.72]],
              "tcmax": [rising, [v + 0.002 for v in rising], [v - 0.001 for v in rising]], "given": [flat] * 3}
    rec = {**rec, "val_curve": curves, "lr_step": None}
    assert protocol.tail_epochs(rec) == 5 and protocol.tail_epochs({**rec, "lr_step": 6}) == 3
    slopes = protocol.tail_slopes(rec)
    assert slopes["tcmax"].verdict == readings.ABOVE and slopes["tcmax"].diff.mean == pytest.approx(0.02)
    assert slopes["joint"].verdict != readings.ABOVE
    assert protocol.curve_shortfalls(rec) == old + [
        f"tcmax: validation accuracy still rising over the last 5 epochs (+0.0200 per epoch, Holm p = "
        f"{slopes['tcmax'].p_adjusted:.2g} over 3)"]
    alone = {**rec, "lr": {"joint": 0.1}, "val_curve": {"joint": curves["joint"]},
             "per_seed": {"joint": rec["per_seed"]["joint"]}, "val_acc_by_lr": {"joint": rec["val_acc_by_lr"]["joint"]}}
    assert protocol.curve_shortfalls(alone) == []
    # one epoch has no slope: the rule says it cannot be read (polyfit on one point raised LinAlgError before)
    one = {**alone, "epochs": 1, "selection_best_epoch": {"joint": 0}, "val_curve": {"joint": [[0.5], [0.6], [0.7]]}}
    assert protocol.tail_slopes(one) == {}
    assert "1 epoch: the tail rule needs at least 2 epochs to read a slope" in protocol.curve_shortfalls(one)


def test_add_seeds_appends_new_seeds_at_the_chosen_rates_and_seed_plan_sizes_them():
    p = protocol.Protocol((0.01, 0.1), (0, 1), selection_seed=9)
    rec = protocol.compare(["joint", "tcmax"], splits, model, "concat", CONFIG, p, keep="none").record(["acc"])
    more = reruns.add_seeds(rec, ["tcmax", "joint"], [2], splits, model, "concat", CONFIG, ["acc"])
    assert more["seeds"] == [0, 1, 2] and more["lr"] == {"tcmax": rec["lr"]["tcmax"], "joint": rec["lr"]["joint"]}
    assert more["per_seed"]["joint"]["acc"][:2] == rec["per_seed"]["joint"]["acc"]
    alone = protocol.compare(["joint"], splits, model, "concat", CONFIG, protocol.Protocol((0.01, 0.1), (2,), 9),
                             lr={"joint": rec["lr"]["joint"]}, keep="none").record(["acc"])
    assert more["per_seed"]["joint"]["acc"][2] == alone["per_seed"]["joint"]["acc"][0]   # the same run, seed 2
    assert len(more["val_curve"]["tcmax"]) == 3
    with pytest.raises(ValueError, match="already reported or are the selection seed"):
        reruns.add_seeds(rec, ["joint"], [1, 9], splits, model, "concat", CONFIG, ["acc"])
    plan = protocol.seed_plan({"seeds": [0, 1, 2, 3, 4], "per_seed": {
        "tcmax": {"acc": [0.90, 0.93, 0.91, 0.95, 0.92]}, "joint": {"acc": [0.80, 0.80, 0.84, 0.82, 0.79]},
        "same": {"acc": [0.90, 0.93, 0.91, 0.95, 0.92]}}}, "tcmax", ["joint", "same"], target=0.02)
    import numpy as np

    d = np.subtract([0.90, 0.93, 0.91, 0.95, 0.92], [0.80, 0.80, 0.84, 0.82, 0.79])
    assert plan.loc["joint", "pilot sd"] == pytest.approx(d.std(ddof=1))
    assert plan.loc["joint", "seeds needed"] == stats.seeds_needed(d.std(ddof=1), 0.02, 0.025)
    assert plan.loc["same", "seeds needed"] == 5 and plan.loc["same", "detectable with 5"] == 0.0


def test_powered_readings_read_each_comparison_on_its_own_seeds_as_one_family():
    import numpy as np

    rng = np.random.default_rng(0)
    t = list(0.9 + 0.02 * rng.standard_normal(12))
    j, u = [v - 0.05 + 0.01 * rng.standard_normal() for v in t], [v + 0.01 * rng.standard_normal() for v in t[:7]]
    base = {"family": ["joint", "unimodal"], "alpha": 0.05, "power": 0.8, "margin": 0.02}
    own = {**base, "comparisons": {                                    # each baseline on the seeds it needs
        "joint": {"seeds": list(range(12)), "per_seed": {"tcmax": {"acc": t}, "joint": {"acc": j}}},
        "unimodal": {"seeds": list(range(7)), "per_seed": {"tcmax": {"acc": t[:7]}, "unimodal": {"acc": u}}}}}
    got = protocol.powered_readings(own)
    ref = readings.read_family({"joint": (t, j), "unimodal": (t[:7], u)}, 0.02, 0.05)   # one family, Holm over 2
    for b, n in (("joint", 12), ("unimodal", 7)):
        r, can, seeds = got[b]
        assert seeds == n and r.verdict == ref[b].verdict and r.p_adjusted == ref[b].p_adjusted
        sd = float(np.std(np.subtract(t[:n], j if b == "joint" else u), ddof=1))
        assert can == pytest.approx(stats.detectable_difference(sd, n, 0.025, 0.8))   # Holm's strictest step
    # a record whose methods share every seed (notebook 05) reads the same as its cut into comparisons
    shared = {**base, "seeds": list(range(7)), "per_seed": {"tcmax": {"acc": t[:7]}, "joint": {"acc": j[:7]},
                                                             "unimodal": {"acc": u}}}
    cut = {**base, "comparisons": {b: {"seeds": list(range(7)), "per_seed": {"tcmax": {"acc": t[:7]},
                                                                              b: shared["per_seed"][b]}}
                                   for b in base["family"]}}
    assert protocol.powered_readings(shared) == protocol.powered_readings(cut)
    # a comparison whose values do not match its seeds is refused, named
    short = {"seeds": list(range(8)), "per_seed": own["comparisons"]["unimodal"]["per_seed"]}   # 7 values, 8 seeds
    bad = {**own, "comparisons": {**own["comparisons"], "unimodal": short}}
    with pytest.raises(ValueError, match="the powered comparison tcmax - unimodal: method 'tcmax'"):
        protocol.powered_readings(bad)


def test_a_rate_that_diverges_on_a_reported_seed_gives_way_to_the_next_best(monkeypatch):
    """The selection seed trains at the chosen rate, a reported seed does not: every seed reruns at the next rate."""
    p = protocol.Protocol((0.003, 0.03, 0.3), (0, 1), selection_seed=7)
    first = protocol.compare(["joint"], splits, model, "concat", CONFIG, p)
    chosen = first.choices["joint"].lr
    real = protocol.run_grid
    calls = []

    def diverges_at_chosen(methods, seeds, *a, **k):                   # the chosen rate blows up on seed 1
        calls.append(a[2].lr)
        if a[2].lr == chosen:
            raise TrainingDivergedError(f"joint diverged in epoch 2 at lr {chosen:g}: seed 1")
        return real(methods, seeds, *a, **k)

    monkeypatch.setattr(protocol, "run_grid", diverges_at_chosen)
    cmp = protocol.compare(["joint"], splits, model, "concat", CONFIG, p)
    acc = first.choices["joint"].val_acc
    runner_up = min((lr for lr in acc if lr != chosen), key=lambda lr: (-acc[lr], lr))
    assert calls == [chosen, runner_up] and cmp.choices["joint"].lr == runner_up
    rec = cmp.record(["acc"])
    assert rec["lr"]["joint"] == runner_up and list(rec["diverged_reported"]["joint"]) == [f"{chosen:g}"]
    assert set(cmp.results["lr"]) == {runner_up} and len(rec["per_seed"]["joint"]["acc"]) == 2   # still paired
    assert (f"joint: rate {chosen:g} diverged on a reported seed; reported at the next-best rate of the selection "
            f"seed, {runner_up:g}") in protocol.curve_shortfalls(rec)
    # a given rate has nothing to fall back on: the error names the method and the rate
    with pytest.raises(TrainingDivergedError, match=f"joint at the given rate {chosen:g} diverged on a reported"):
        protocol.compare(["joint"], splits, model, "concat", CONFIG, p, lr={"joint": chosen})
    # no rate left: say so, and what to do
    monkeypatch.setattr(protocol, "run_grid", lambda *a, **k: (_ for _ in ()).throw(TrainingDivergedError("x")))
    with pytest.raises(TrainingDivergedError, match="a reported seed diverged; add smaller rates"):
        protocol.compare(["joint"], splits, model, "concat", CONFIG, p)


def test_at_next_rate_reruns_the_seeds_at_the_runner_up_rate_with_the_same_fallback(monkeypatch):
    """The control of the rate choice: each method's next-best selection rate, the same seeds, paired."""
    p = protocol.Protocol((0.003, 0.03, 0.3), (0, 1), selection_seed=7)
    rec = protocol.compare(["joint", "tcmax"], splits, model, "concat", CONFIG, p, keep="none").record(["acc"])
    runner_up = {}
    for m in ("joint", "tcmax"):                                      # written out: best after the chosen rate
        val = {float(g): v for g, v in rec["val_acc_by_lr"][m].items() if float(g) != rec["lr"][m]}
        runner_up[m] = min(val, key=lambda lr: (-val[lr], lr))
    nxt = reruns.at_next_rate(rec, ["joint", "tcmax"], splits, model, "concat", CONFIG, ["acc"])
    assert nxt["lr"] == runner_up and nxt["seeds"] == rec["seeds"] and nxt["selection_seed"] == 7
    given = protocol.compare(["joint", "tcmax"], splits, model, "concat", CONFIG, p, lr=runner_up,
                             keep="none").record(["acc"])
    assert nxt["per_seed"] == given["per_seed"]                       # the same runs as the rates given outright
    assert f"{rec['lr']['joint']:g}" not in nxt["val_acc_by_lr"]["joint"]   # the chosen rate is out of its grid
    # a rate a reported seed diverged at is out too, and a divergence at the runner-up falls back further
    gone = {**rec, "diverged_reported": {"joint": {f"{runner_up['joint']:g}": "diverged"}}}
    third = ({0.003, 0.03, 0.3} - {rec["lr"]["joint"], runner_up["joint"]}).pop()
    assert reruns.at_next_rate(gone, ["joint"], splits, model, "concat", CONFIG, ["acc"])["lr"] == {"joint": third}
    real = protocol.run_grid

    def diverges_at(lr):
        def run(methods, seeds, *a, **k):
            if a[2].lr == lr:
                raise TrainingDivergedError(f"diverged at lr {lr:g}")
            return real(methods, seeds, *a, **k)
        return run

    monkeypatch.setattr(protocol, "run_grid", diverges_at(runner_up["joint"]))
    fell = reruns.at_next_rate(rec, ["joint"], splits, model, "concat", CONFIG, ["acc"])
    assert fell["lr"] == {"joint": third} and list(fell["diverged_reported"]["joint"]) == [f"{runner_up['joint']:g}"]
    monkeypatch.setattr(protocol, "run_grid", real)
    only = {**rec, "val_acc_by_lr": {**rec["val_acc_by_lr"], "joint": {f"{rec['lr']['joint']:g}": 0.9}}}
    with pytest.raises(ValueError, match="joint has no rate besides"):
        reruns.at_next_rate(only, ["joint"], splits, model, "concat", CONFIG, ["acc"])
