"""The fault attack's third round (#36): results that pair up, writers that refuse, numbers that blow up.

Each case failed on main before this round: it gave a silent wrong result, an unclear error or a corruption.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from tcmax_lib import protocol
from tcmax_lib.course import cli, cli_io
from tcmax_lib.data.toy import ToyConfig, make_toy_splits
from tcmax_lib.methods import make_method
from tcmax_lib.models import FiLMHead, mlp_pair_model
from tcmax_lib.train import TrainConfig, TrainingDivergedError, fit

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- results that pair up
def _pair(tmp_path, csv_id: str, rec_id: str | None):
    out = tmp_path / "res.csv"
    pd.DataFrame({"method": ["joint"], "seed": [0], "acc": [0.5], "run_id": [csv_id]}).to_csv(out, index=False)
    if rec_id is not None:
        rec = {"seeds": [0], "per_seed": {"joint": {"acc": [0.5]}}, "run_id": rec_id}
        (tmp_path / "res.protocol.json").write_text(json.dumps(rec))
    return out


def test_a_csv_beside_another_runs_record_is_refused(tmp_path):
    frame, rec = cli_io.read_result(_pair(tmp_path, "run-a", "run-a"))
    assert rec["run_id"] == "run-a" and list(frame.acc) == [0.5]
    with pytest.raises(ValueError, match="come from different runs"):   # SIGTERM between the two writes
        cli_io.read_result(_pair(tmp_path, "run-b", "run-a"))


def test_a_second_run_on_the_same_out_is_refused_before_any_work(tmp_path):
    from tcmax_lib.files import file_lock

    out = tmp_path / "res.csv"
    with file_lock(out), pytest.raises(SystemExit, match="another run is writing this result"):
        cli.main(["cremad", "train", "--subset", "offline", "--method", "joint", "--epochs", "1", "--seeds", "1",
                  "--device", "cpu", "--out", str(out)])
    assert not out.exists()


def test_the_student_edition_never_replaces_the_instructor_notebooks(tmp_path):
    (tmp_path / "00_overview.ipynb").write_text((ROOT / "notebooks" / "00_overview.ipynb").read_text())
    with pytest.raises(SystemExit, match="is not a student edition"):
        cli.main(["course", "student", "--out", str(tmp_path), "--only", "00"])
    assert "tcmax_exercise" not in (tmp_path / "00_overview.ipynb").read_text()      # untouched
    cli.main(["course", "student", "--out", str(tmp_path / "fresh"), "--only", "00"])
    cli.main(["course", "student", "--out", str(tmp_path / "fresh"), "--only", "00"])   # its own output: fine


def test_a_negative_learning_rate_names_the_problem():
    with pytest.raises(SystemExit, match="learning rates are positive numbers"):
        cli.main(["cremad", "train", "--lr-grid", "-0.1,0.3", "--out", "x.csv"])


# ----------------------------------------------------------------------------- numbers that blow up
def test_a_model_blown_up_in_one_step_is_a_divergence_and_never_selected():
    cfg = ToyConfig(interaction=False)
    data = make_toy_splits(cfg, n_train=128, n_val=64, n_test=64, seed=0)
    model = mlp_pair_model(cfg.dims, cfg.num_classes, "concat", hidden=16, feat=8, seed=0)
    huge = TrainConfig(epochs=1, batch_size=128, optimizer="sgd", lr=1e12, progress=False)   # its only step
    with pytest.raises(TrainingDivergedError, match="diverged in epoch 1 at lr 1e\\+12"):
        fit(model, make_method("joint"), data.train, data.val, huge)
    p = protocol.Protocol((0.1, 1e12), (0,), selection_seed=3)
    choice = protocol.select_lr("joint", lambda s: data, lambda s: mlp_pair_model(cfg.dims, cfg.num_classes, "concat",
                                hidden=16, feat=8, seed=s), TrainConfig(epochs=2, batch_size=128, optimizer="sgd",
                                                                         progress=False), p)
    assert choice.lr == 0.1 and choice.val_acc[1e12] == -math.inf


def test_clear_errors_for_the_remaining_inputs(tmp_path):
    from tcmax_lib.info.bounds import sample_distinct_tuples
    from tcmax_lib.info.closed_forms import gaussian_log_ratio
    from tcmax_lib.losses import tcmax_loss

    logits = [torch.zeros(4, 3), torch.zeros(4, 3)]
    with pytest.raises(ValueError, match="the labels are on meta and the logits on cpu"):
        tcmax_loss(logits, torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match=r"built for features of widths \(8, 8\).*dims=\[6, 8\]"):
        FiLMHead([8, 8], 3)(torch.zeros(2, 6), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="strictly between -1 and 1"):
        gaussian_log_ratio(torch.zeros(3, 2), torch.zeros(3, 2), 1.0)
    with pytest.raises(ValueError, match="draw at least one tuple"):
        sample_distinct_tuples(8, 3, 0)
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:                              # 'a' is a file and a folder
        for name in ("a", "a/b"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    from tcmax_lib.data.download import safe_extract_tar

    with pytest.raises(RuntimeError, match="'a' is a file in one member and a folder"):
        safe_extract_tar(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())   # nothing half-extracted
