"""Train the toy problem with TCMax for 2 epochs per head and save the weights; run alone or under torchrun.

    python tests/dist_train_toy.py OUT.pt [HEAD,HEAD,...]
    python -m torch.distributed.run --nproc_per_node=2 tests/dist_train_toy.py OUT.pt [HEAD,HEAD,...]

Used by tests/test_distributed.py: both runs must give the same weights (global batch 64 either way). Every head
trains in one process (one start of torch and of the process group serves them all).
"""

import sys

import torch

from tcmax_lib import distributed
from tcmax_lib.data.toy import ToyConfig, make_toy_splits
from tcmax_lib.methods import make_method
from tcmax_lib.models import mlp_pair_model
from tcmax_lib.train import TrainConfig, fit

torch.set_num_threads(1)
distributed.init_from_env()
cfg = ToyConfig(interaction=False)
splits = make_toy_splits(cfg, n_train=1024, n_val=256, n_test=256, seed=0)
HEADS = sys.argv[2].split(",") if len(sys.argv) > 2 else ["concat"]
out = {}
for head in HEADS:
    model = mlp_pair_model(cfg.dims, cfg.num_classes, head, seed=0)
    model, hist = fit(model, make_method("tcmax"), splits.train, splits.val,
                      TrainConfig(epochs=2, batch_size=64, progress=False))
    out[head] = {"state": model.state_dict(), "best_epoch": int(hist["best_epoch"].iloc[0])}
if distributed.rank() == 0:
    torch.save(out, sys.argv[1])
