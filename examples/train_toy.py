"""Train a small MLP on a toy regression problem with capgen's training loop (checkpoints, exact resume, EMA,
wandb), in one process or under `accelerate launch`.

    python examples/train_toy.py --epochs 8 --lr 3e-3 --ckpt-dir runs/toy
    python examples/train_toy.py --epochs 8 --lr 3e-3 --ckpt-dir runs/toy --resume latest    # after an interruption
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision no examples/train_toy.py --ckpt-dir runs/toy8

Its flags are the fields of `TrainConfig` plus `--config FILE`, `--resume` and `--dropout`. Exit codes: 0 done;
2 a bad flag, value, config file or checkpoint (one line says which and why); 128 + N stopped by signal N after
saving a checkpoint (run it again with `--resume latest`).
"""
from __future__ import annotations

import argparse
import gc
import signal
import sys

import torch
import torch.distributed as dist
from torch import nn
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner

from capgen.core import LoadError, pick_device
from capgen.config import TrainConfig, add_config_args, config_from_args
from capgen.distributed import micro_batch_size
from capgen.training import make_learner


def toy_data(n: int, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    "`n` samples `(x (n, d), y (n, 1))` of a fixed smooth function of Gaussian inputs, with noise."
    g = torch.Generator().manual_seed(seed)
    w = 0.4 * torch.randn(d, 4, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(n, d, generator=g)
    y = torch.sin(x @ w).sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


class ToyMLP(nn.Sequential):
    "A two-layer MLP for `toy_data`."
    def __init__(self, d: int = 8, hidden: int = 64, dropout: float = 0.1):
        super().__init__(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


def toy_dls(cfg: TrainConfig, n_train: int = 1024, n_valid: int = 256, device="cpu") -> DataLoaders:
    """Shuffled training and fixed validation `DataLoaders` over `toy_data`, with each process's micro-batch size, on
    `device` (the CPU unless told otherwise: the data is tiny; under `accelerate launch` each process's device)."""
    bs = micro_batch_size(cfg)
    train = list(zip(*toy_data(n_train, seed=1)))
    valid = list(zip(*toy_data(n_valid, seed=2)))
    return DataLoaders(DataLoader(train, bs=bs, shuffle=True), DataLoader(valid, bs=bs), device=pick_device(device))


def toy_learner(cfg: TrainConfig, dropout: float = 0.1, **kwargs) -> Learner:
    "A `Learner` for the toy problem; the model's initial weights come from `cfg.seed`."
    torch.manual_seed(cfg.seed)
    return make_learner(ToyMLP(dropout=dropout), toy_dls(cfg), nn.MSELoss(), cfg, **kwargs)


def train_toy(argv: list[str] | None = None, cbs=None) -> Learner:
    "The training script: `TrainConfig` flags or `--config FILE`, `--resume`, `--dropout`; the trained `Learner`."
    p = argparse.ArgumentParser(prog="train_toy.py", description="Train the toy MLP with capgen's training loop.")
    p.add_argument("--config", help="a TrainConfig JSON file; flags may add to it but not contradict it")
    p.add_argument("--resume", help="'latest', 'auto' or a checkpoint directory")
    p.add_argument("--dropout", type=float, default=0.1)
    add_config_args(p, TrainConfig)
    args = p.parse_args(argv)
    cfg = config_from_args(TrainConfig, args, args.config)
    learn = toy_learner(cfg, dropout=args.dropout, show_graph=False)
    learn.fit_cfg(resume=args.resume, cbs=cbs)
    return learn


def main(argv: list[str] | None = None) -> int:
    "Run `train_toy` and return the exit code: 0 done, 2 a bad flag, value, file or checkpoint, 128 + N signal N."
    try: learn = train_toy(argv)
    except (ValueError, TypeError, LoadError, FileNotFoundError) as e:
        print(f"train_toy.py: error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():  # gloo can abort at exit unless the process group is torn down first
            gc.collect()
            dist.destroy_process_group()
    if learn.interrupted:
        return 128 + getattr(signal, learn.interrupted, signal.SIGTERM).value
    if learn.last_ckpt is not None:  # rank 0
        print(f"trained {learn.step} steps; valid loss {learn.recorder.values[-1][1]:.4f}; checkpoint {learn.last_ckpt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
