"""Optimizers and learning-rate schedules for `kiln.compile(..., mode="train")`.

An optimizer names the update op the autodiff pass adds per parameter (ir/ops/optim.py has the
update rules), its attributes, its per-parameter slots, and the `hyper` values fed at each step,
so a schedule changes the learning rate without recompiling anything.

    opt = kiln.optim.SGD(lr=0.1, momentum=0.9, weight_decay=5e-4, schedule=kiln.optim.cosine(1000))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .ir.errors import InputError

Schedule = Callable[[int], float]  # step (0-based) -> factor on the base learning rate


def constant() -> Schedule:
    return lambda step: 1.0


def step_decay(every: int, gamma: float = 0.1) -> Schedule:
    """lr * gamma ** (step // every), PyTorch's StepLR counted in steps."""
    return lambda step: gamma ** (step // every)


def cosine(total: int, warmup: int = 0, floor: float = 0.0) -> Schedule:
    """Linear warm-up over `warmup` steps, then a cosine from 1 down to `floor` at `total`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return factor


def _check(name: str, value: float, lo: float = 0.0, hi: float = math.inf) -> None:
    if not lo <= value < hi:
        raise InputError(f"{name} must be in [{lo}, {hi}), got {value}")


@dataclass
class SGD:
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: Schedule | None = None

    op = "sgd_update"
    hyper_size = 1

    def __post_init__(self) -> None:
        _check("lr", self.lr, 0.0)
        _check("momentum", self.momentum, 0.0, 1.0)
        _check("weight_decay", self.weight_decay)
        if self.nesterov and self.momentum == 0:
            raise InputError("nesterov needs momentum > 0")

    @property
    def attrs(self) -> dict:
        return {"momentum": self.momentum, "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    @property
    def slots(self) -> tuple[str, ...]:
        return ("velocity",) if self.momentum else ()

    def update_inputs(self, w: str, g: str, hyper: str, slots: list[str]) -> list[str]:
        return [w, g, hyper, *slots]

    def lr_at(self, step: int) -> float:
        return self.lr * (self.schedule(step) if self.schedule else 1.0)

    def hyper(self, step: int) -> np.ndarray:
        return np.array([self.lr_at(step)], np.float32)


@dataclass
class Adam:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled: bool = False  # True: AdamW
    schedule: Schedule | None = None

    op = "adam_update"
    hyper_size = 3
    slots = ("adam_m", "adam_v")

    def __post_init__(self) -> None:
        _check("lr", self.lr, 0.0)
        for b in self.betas:
            _check("beta", b, 0.0, 1.0)
        _check("weight_decay", self.weight_decay)

    @property
    def attrs(self) -> dict:
        return {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
                "weight_decay": self.weight_decay, "decoupled": self.decoupled}

    def update_inputs(self, w: str, g: str, hyper: str, slots: list[str]) -> list[str]:
        return [w, g, *slots, hyper]

    def lr_at(self, step: int) -> float:
        return self.lr * (self.schedule(step) if self.schedule else 1.0)

    def hyper(self, step: int) -> np.ndarray:
        t = step + 1
        lr = self.lr_at(step)
        b1, b2 = self.betas
        return np.array([lr / (1 - b1 ** t), 1 / math.sqrt(1 - b2 ** t), lr], np.float32)


def AdamW(lr: float = 1e-3, weight_decay: float = 1e-2, **kw) -> Adam:
    return Adam(lr=lr, weight_decay=weight_decay, decoupled=True, **kw)
