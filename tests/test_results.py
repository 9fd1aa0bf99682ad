"""Committed FULL results and the README tables generated from them."""

import json

import pytest

from tcmax_lib.course import results, series


def test_readme_matches_results():
    names = [nb.stem for nb in series.notebooks()]
    assert results.update_readme(names, check=True), "README.md is out of date with results/: run `tcmax readme`"


def test_every_committed_result_has_provenance():
    for path in sorted(results.results_dir().glob("[0-9][0-9]_*.json")):
        data = json.loads(path.read_text())
        meta = data["meta"]
        assert meta["mode"] == "FULL", path.name
        for key in ("device", "torch", "commit", "date", "wall_time_s"):
            assert meta[key] not in (None, ""), f"{path.name}: meta.{key} is missing"
        assert meta["wall_time_s"] > 0 and data["metrics"], path.name


def test_publish_refuses_fast_metrics_and_renders_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("TCMAX_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="only FULL runs are published"):
        results.publish("99_demo", {"_fast": True, "x": 1.0}, 3.0)
    metrics = {"_fast": False, "_device": "CPU test", "_torch": "2.x", "x": 1.25,
               "summary_scores": {"joint": {"acc": 0.5}, "tcmax": {"acc": 0.75}}}
    path = results.publish("99_demo", metrics, 12.34)
    saved = json.loads(path.read_text())
    assert saved["metrics"] == {"x": 1.25, "summary_scores": metrics["summary_scores"]}
    assert saved["meta"]["wall_time_s"] == 12.3 and saved["meta"]["device"] == "CPU test"
    results.publish_fast_timings({"99_demo.ipynb": 4.04}, "CPU test", "2.x")
    block = results.readme_block(["99_demo", "98_never_run"])
    assert "| 99_demo | 4 s | 12 s | CPU test · fp32 (pre-policy) · 2.x ·" in block     # no _precision recorded
    metrics["_precision"] = "bf16 (auto: AMX-BF16)"
    path = results.publish("99_demo", metrics, 12.34)
    assert json.loads(path.read_text())["meta"]["precision"] == "bf16 (auto: AMX-BF16)"
    assert "| 99_demo | 4 s | 12 s | CPU test · bf16 · 2.x ·" in results.readme_block(["99_demo"])
    assert "| 98_never_run | not measured | not run |" in block
    assert "| joint | 0.500 |" in block and "| tcmax | 0.750 |" in block


def test_04_optimizer_reading():
    """Each point of notebook 04 section 10's reading holds on the committed FULL run."""
    import numpy as np

    from tcmax_lib.stats import paired_difference

    res = results.load_results("04_tcmax")
    mod = res["metrics"]["optimizer_modulation"]["per_seed"]
    dist = {o: {m: float(np.mean(v["visual_encoder_distance"])) for m, v in per.items()} for o, per in mod.items()}
    for m in ("ogm_ge_no_noise", "agm"):                                 # "several times further under SGD"
        assert dist["sgd"][m] > 2 * dist["adamw"][m], m
    assert dist["adamw"]["ogm_ge"] > 3 * dist["adamw"]["ogm_ge_no_noise"]   # under AdamW, mostly the noise
    for o in mod:                                                        # MMPareto moves the encoder furthest
        assert max(dist[o], key=dist[o].get) == "mmpareto", o
        for m in ("ogm_ge", "ogm_ge_no_noise", "agm", "mmpareto"):       # fused: < 0.01; only MMPareto + SGD resolved
            fused = paired_difference(mod[o][m]["acc"], mod[o]["joint"]["acc"])
            assert abs(fused.mean) < 0.01 and (fused.lo > 0 if (o, m) == ("sgd", "mmpareto") else fused.contains(0.0))
        probe = paired_difference(mod[o]["mmpareto"]["probe_visual"], mod[o]["joint"]["probe_visual"])
        assert probe.lo > 0, o                                           # MMPareto's probe gain is resolved
    unresolved = [paired_difference(mod[o][m][c], mod[o]["joint"][c]).contains(0.0) for o in mod
                  for m in ("ogm_ge", "ogm_ge_no_noise", "agm") for c in ("acc_visual_head", "probe_visual")]
    assert sum(unresolved) > len(unresolved) / 2                         # "mostly contain 0"
    sc = res["metrics"]["optimizer_scale_invariance"]
    assert sc["adamw (eps 1e-12)"]["|theta(k=0.2) - theta(k=1)| / |theta(k=1) - theta_0|"] < 1e-5
    lr = res["metrics"]["optimizer_modulation"]
    assert lr["lr"]["sgd"] == max(lr["lr_grid"]["sgd"])                  # "the largest of its grid"


def test_07_summary_tables_are_t_intervals_of_the_per_seed_values():
    """README tables of 07: mean ± t_{n-1} s / sqrt(n) per method and data set; none from a pre-protocol record."""
    import math
    import statistics

    from scipy.stats import t

    vals = [0.70, 0.74, 0.71, 0.77, 0.73]
    rec = {"seeds": [0, 1, 2, 3, 4], "per_seed": {"joint": {"acc": vals, "js": vals, "entropy_ratio": vals}}}
    tables = results._summary_07({"protocol": "SGD", "main": {"toy A": rec}})
    assert len(tables) == 3 and all("5 " in k for k in tables)
    half = t.ppf(0.975, 4) * statistics.stdev(vals) / math.sqrt(5)         # the obvious formula
    expected = f"{statistics.mean(vals):.3f} ± {half:.3f}"
    assert all(tab == {"joint": {"toy A": expected}} for tab in tables.values())
    assert results._summary_07({"main": {"toy A": {"joint": {"acc": 0.7}}}, "main_std": {}}) == {}
