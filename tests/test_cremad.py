"""CREMA-D pipeline on the 6 real clips of the offline mirror: decoding, presets against an independent
reference, verified downloads, splits, augmentation, and the CLI end to end."""

import os
import shutil

import numpy as np
import pytest
import torch

from tcmax_lib.course import cli
from tcmax_lib.data import cremad as cd
from tcmax_lib.data import cremad_cache as cc
from tcmax_lib.data import download as dl

pytestmark = pytest.mark.skipif(
    not os.environ.get("TCMAX_DATA_MIRROR") or not (dl.mirror_dir() / "cremad").exists(),
    reason="needs the 6 offline CREMA-D clips: set TCMAX_DATA_MIRROR (CI sets ../shared/data)")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return cd.download(cd.subset("offline"), tmp_path_factory.mktemp("c"), progress=False)


def test_manifest_and_splits_facts():
    table = cd.manifest()
    assert len(table) == 7442
    test = cd.ogm_test_clips()
    assert len(test) == len(set(test)) == 744 and set(test) <= set(table)
    idx = cc.split_indices(sorted(table), "ogm", val_fraction=0.0)
    assert (len(idx["train"]), len(idx["test"])) == (6698, 744)
    sp = cc.split_indices(cd.subset("teaching"), "speaker", seed=1)
    clips = cd.subset("teaching")
    actors = lambda part: {cd.parse(clips[i])["actor"] for i in sp[part].tolist()}
    assert not actors("test") & (actors("train") | actors("val"))      # speaker-independent
    assert len(cd.subset("teaching")) == 546 and len(cd.drop_bad(cd.subset("all"), log=False)) == 7438


def test_decode_frames_and_audio(paths):
    frames = cd.decode_frames(paths[0], 3, 1.0)
    assert frames.shape == (3, 3, 360, 480) and frames.dtype == torch.uint8
    assert 20 < frames.float().mean() < 235 and frames.float().std() > 5   # a real picture, not blank
    assert not torch.equal(frames[0], frames[2])                           # 2 s apart: the face moved
    wave = cd.decode_audio(paths[0], 22050)
    assert 1.5 < wave.numel() / 22050 < 4.0 and wave.abs().max() <= 1.0 and wave.std() > 1e-3


def _reference_spec(wave: np.ndarray, seconds: float, n_fft: int, hop: int, sr: int = 22050) -> np.ndarray:
    n = int(round(seconds * sr))
    x = np.tile(wave, int(np.ceil(n / len(wave))))[:n].clip(-1, 1).astype(np.float64)
    x = np.pad(x, n_fft // 2)                                              # centred frames, zero padding
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)        # periodic Hann
    frames = np.stack([x[t:t + n_fft] * win for t in range(0, len(x) - n_fft + 1, hop)])
    return np.log(np.abs(np.fft.rfft(frames, axis=1)) + 1e-7).T


def test_ogm_preset_matches_independent_reference(paths):
    wave = cd.decode_audio(paths[1], 22050)
    ours = cd.spectrogram(wave, cd.PRESETS["ogm"], "x")[0].double().numpy()
    assert ours.shape == (257, 188)
    ref = _reference_spec(wave.numpy(), 3.0, 512, 353)
    # float32 FFT vs float64: log-magnitudes agree closely except in near-silent bins (log(1e-7) floor)
    loud = ref > -8
    np.testing.assert_allclose(ours[loud], ref[loud], atol=2e-3)
    assert cd.PRESETS["tcmax"].spec_shape == (129, 862)


def test_download_mismatch_and_resume(tmp_path):
    mirror = tmp_path / "mirror" / "cremad" / "VideoFlash"
    mirror.mkdir(parents=True)
    src = dl.mirror_dir() / "cremad" / "VideoFlash" / "1001_DFA_ANG_XX.flv"
    bad = bytearray(src.read_bytes())
    bad[5000] ^= 0xFF
    (mirror / src.name).write_bytes(bytes(bad))
    os.environ["TCMAX_DATA_MIRROR"], old = str(tmp_path / "mirror"), os.environ["TCMAX_DATA_MIRROR"]
    try:
        with pytest.raises(dl.ChecksumError, match="1001_DFA_ANG_XX.flv.*SHA-256 mismatch"):
            cd.download(["1001_DFA_ANG_XX"], tmp_path / "cache", progress=False)
        assert not (tmp_path / "cache" / "cremad" / "VideoFlash" / "1001_DFA_ANG_XX.flv").exists()
        shutil.copy(src, mirror / src.name)                                # mirror repaired: the run resumes
        path, = cd.download(["1001_DFA_ANG_XX"], tmp_path / "cache", progress=False)
        assert dl.sha256_file(path) == cd.manifest()["1001_DFA_ANG_XX"][0]
    finally:
        os.environ["TCMAX_DATA_MIRROR"] = old
    with pytest.raises(ValueError, match="not a CREMA-D clip"):
        cd.download(["1001_XXX_ANG_XX"], tmp_path / "cache", progress=False)


def test_cache_roundtrip_and_rebuild(tmp_path, capsys):
    preset = cd.with_size(cd.PRESETS["ogm"], 64)
    clips = cd.subset("offline")
    root = cc.build_cache(clips, preset, tmp_path, workers=1, progress=False)
    cache = cc.load_cache(root)
    assert cache["frames"].shape == (6, 3, 3, 64, 64) and cache["frames"].dtype == torch.uint8
    assert cache["specs"].shape == (6, 1, 257, 188) and cache["specs"].dtype == torch.float16
    assert torch.isfinite(cache["specs"].float()).all()
    assert cache["labels"].tolist() == [cd.parse(c)["label"] for c in clips]
    (root / "frames.npy").write_bytes(b"garbage")                          # damaged cache is rebuilt
    root2 = cc.build_cache(clips, preset, tmp_path, workers=1, progress=False)
    assert "rebuilding" in capsys.readouterr().out
    assert torch.equal(cc.load_cache(root2)["frames"], cache["frames"])


def test_decoding_in_one_process_leaves_the_callers_threads_alone(tmp_path):
    # the grader and small machines decode in the caller's process: it must keep training on every core after
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cc.build_cache(cd.subset("offline")[:2], cd.with_size(cd.PRESETS["ogm"], 32), tmp_path, workers=1,
                       progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_cache_key_includes_the_clips_and_bad_index_is_rebuilt(tmp_path, capsys):
    preset = cd.with_size(cd.PRESETS["ogm"], 32)
    clips = cd.subset("offline")
    root_all = cc.build_cache(clips, preset, tmp_path, workers=1, progress=False)
    root_two = cc.build_cache(clips[:2], preset, tmp_path, workers=1, progress=False)
    assert root_all != root_two                                            # another clip list: another cache
    assert cc.load_cache(root_all)["frames"].shape[0] == 6                 # the first one was not overwritten
    for bad in ("", "{not json", "[]"):
        (root_two / "index.json").write_text(bad)
        with pytest.raises(dl.ChecksumError, match="incomplete or damaged.*rebuild"):
            cc.load_cache(root_two)
        again = cc.build_cache(clips[:2], preset, tmp_path, workers=1, progress=False)
        assert "rebuilding" in capsys.readouterr().out and cc.load_cache(again)["frames"].shape[0] == 2
    spec = np.load(root_two / "specs.npy", mmap_mode="r+")                  # flipped bytes in the memmap
    spec[0, 0, 0, 0] = np.float16(np.nan)
    spec.flush()
    del spec
    cc.build_cache(clips[:2], preset, tmp_path, workers=1, progress=False)
    assert "rebuilding" in capsys.readouterr().out
    assert torch.isfinite(cc.load_cache(root_two)["specs"].float()).all()


def test_speaker_split_needs_two_actors():
    with pytest.raises(ValueError, match="1 actor.*larger subset"):
        cc.split_indices(cd.subset("offline"), "speaker")


def test_augment_frames_shapes_and_ranges():
    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    out = cc.augment_frames(frames, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    full = cc.augment_frames(frames, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    # a full-size crop is the image itself or its mirror image
    img = frames.float() / 255
    same = torch.isclose(full, img, atol=1e-5).flatten(2).all(2)
    mirrored = torch.isclose(full, img.flip(-1), atol=1e-5).flatten(2).all(2)
    assert (same | mirrored).all()


def test_cli_runs_the_protocol_and_writes_its_record(tmp_path, capsys):
    import json

    import pandas as pd

    out = tmp_path / "res.csv"
    cli.main(["cremad", "train", "--subset", "offline", "--method", "joint,tcmax", "--epochs", "1", "--seeds", "1",
             "--lr-grid", "0.001,0.01", "--frame-size", "64", "--batch-size", "4", "--device", "cpu", "--workers",
             "1", "--out", str(out)])
    text = capsys.readouterr().out
    rec = json.loads((tmp_path / "res.protocol.json").read_text())
    assert rec["lr_grid"] == [0.001, 0.01] and rec["seeds"] == [0] and rec["selection_seed"] == 1000
    for m in ("joint", "tcmax"):
        assert rec["lr"][m] in (0.001, 0.01) and set(rec["val_acc_by_lr"][m]) == {"0.001", "0.01"}
        assert len(rec["per_seed"][m]["acc"]) == 1 and 0 <= rec["per_seed"][m]["acc"][0] <= 1
    res = pd.read_csv(out)
    assert sorted(res.method) == ["joint", "tcmax"] and dict(zip(res.method, res.lr)) == rec["lr"]
    assert "2 learning rates (the rule: at least 3)" in text and "1 reported seeds (the rule: at least 5)" in text
    assert "of the grid" in text                  # with 2 rates every choice sits at an edge: printed as a shortfall
    # the CSV and its record are one result: one run id in both, read together
    from tcmax_lib.course.cli_io import read_result

    frame, back = read_result(out)
    assert back["run_id"] == rec["run_id"] and set(frame.run_id) == {rec["run_id"]}
    # a rerun without --lr-grid on the same --out: the old record no longer describes the CSV and is gone
    cli.main(["cremad", "train", "--subset", "offline", "--method", "joint", "--epochs", "1", "--seeds", "1",
              "--frame-size", "64", "--batch-size", "4", "--device", "cpu", "--workers", "1", "--out", str(out)])
    assert not (tmp_path / "res.protocol.json").exists()
    frame, back = read_result(out)
    assert back is None and len(set(frame.run_id)) == 1 and set(frame.run_id) != {rec["run_id"]}


def test_cli_trains_end_to_end(tmp_path, capsys):
    out = tmp_path / "res.csv"
    cli.main(["cremad", "train", "--subset", "offline", "--method", "joint,tcmax", "--epochs", "1", "--seeds", "1",
             "--frame-size", "64", "--batch-size", "4", "--device", "cpu", "--workers", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert "tcmax seed 0: test acc" in text and out.exists()
    import pandas as pd
    res = pd.read_csv(out)
    assert set(res.method) == {"joint", "tcmax"} and res.acc.between(0, 1).all()
