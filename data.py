"""Data for training: small bundled data sets, a seeded input pipeline with augmentation, and
batched evaluation with test-time augmentation.

Every random choice takes a seed (or a numpy Generator), so a run repeats exactly.

    train, test = kiln.data.digits()                       # 28x28 handwritten digits
    aug = kiln.data.Augment(crop_pad=2, flip=False, brightness=0.1, contrast=0.1)
    for epoch in range(10):
        for feeds in kiln.data.batches(train, 64, seed=epoch, augment=aug):
            trainer.step(feeds)
    print(kiln.data.evaluate(trainer, test))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .ir.errors import InputError


@dataclass
class Dataset:
    """Examples `x` (first axis: examples), integer `labels`, the model input's name, and for
    node classification a boolean `mask` of the nodes this split scores (x then holds the
    whole graph's features)."""

    x: np.ndarray
    labels: np.ndarray
    input_name: str = "input"
    mask: np.ndarray | None = None
    classes: int = 0
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def feeds(self) -> dict[str, np.ndarray]:
        """The whole set as one feed dict (node classification: the graph and this split's mask)."""
        out = {self.input_name: self.x, "labels": self.labels}
        if self.mask is not None:
            out["mask"] = self.mask
        return out


# -- data sets --------------------------------------------------------------------------------
def digits(test_fraction: float = 0.25, seed: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), scaled 3x to
    24x24 and padded to LeNet-5's 1x28x28, normalised to zero mean and unit variance; split
    into train and test by a seeded shuffle."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError("the digits data set comes with scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    images = np.kron(d.images, np.ones((3, 3))) / 16.0
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    images = ((images - images.mean()) / images.std()).astype(np.float32)[:, None]
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(len(images) * (1 - test_fraction))
    tr, te = order[:cut], order[cut:]
    labels = d.target.astype(np.int64)
    return (Dataset(images[tr], labels[tr], classes=10), Dataset(images[te], labels[te], classes=10))


def karate() -> tuple[Dataset, Dataset]:
    """Zachary's karate club (networkx): one-hot features, the two clubs as labels; train on one
    labelled member per club (the two leaders, nodes 0 and 33), test on all the others."""
    import networkx as nx

    g = nx.karate_club_graph()
    labels = np.array([0 if g.nodes[v]["club"] == "Mr. Hi" else 1 for v in g.nodes], np.int64)
    train = np.zeros(len(labels), bool)
    train[[0, 33]] = True
    x = np.eye(len(labels), dtype=np.float32)
    return (Dataset(x, labels, "features", train, 2, {"graph": g}),
            Dataset(x, labels, "features", ~train, 2, {"graph": g}))


def block_model(sizes: Sequence[int] = (60, 60, 60), p_in: float = 0.1, p_out: float = 0.01,
                features: int = 16, signal: float = 0.6, train_per_class: int = 10,
                seed: int = 0) -> tuple[Dataset, Dataset]:
    """A stochastic block model graph (networkx) whose blocks are the classes, with features
    drawn around a per-class mean (`signal` sets how far apart, against unit noise); the train
    split labels `train_per_class` nodes of each class, the test split scores the rest."""
    import networkx as nx

    rng = np.random.default_rng(seed)
    k = len(sizes)
    probs = [[p_in if i == j else p_out for j in range(k)] for i in range(k)]
    g = nx.stochastic_block_model(list(sizes), probs, seed=seed)
    labels = np.repeat(np.arange(k), sizes).astype(np.int64)
    means = rng.standard_normal((k, features)) * signal
    x = (means[labels] + rng.standard_normal((len(labels), features))).astype(np.float32)
    train = np.zeros(len(labels), bool)
    for c in range(k):
        train[rng.choice(np.flatnonzero(labels == c), train_per_class, replace=False)] = True
    return (Dataset(x, labels, "features", train, k, {"graph": g}),
            Dataset(x, labels, "features", ~train, k, {"graph": g}))


def synthetic_images(n: int, classes: int = 10, shape: Sequence[int] = (3, 32, 32), seed: int = 0,
                     noise: float = 1.0) -> Dataset:
    """Images whose class is a fixed random pattern under noise: learnable, and any size."""
    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal((classes, *shape))
    labels = rng.integers(0, classes, n)
    x = patterns[labels] + noise * rng.standard_normal((n, *shape))
    return Dataset(x.astype(np.float32), labels.astype(np.int64), classes=classes)


# -- augmentation -----------------------------------------------------------------------------
@dataclass
class Augment:
    """Per-image random transforms of an NCHW float batch: a random crop after zero padding by
    `crop_pad`, a horizontal flip with probability 1/2, and brightness / contrast jitter (add a
    uniform offset in [-brightness, brightness]; scale the deviation from the image's mean by a
    factor in [1 - contrast, 1 + contrast])."""

    crop_pad: int = 0
    flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if x.ndim != 4:
            raise InputError(f"augmentation works on NCHW image batches, got shape {list(x.shape)}")
        n, _, h, w = x.shape
        out = x.copy()
        if self.crop_pad:
            p = self.crop_pad
            padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
            dy, dx = rng.integers(0, 2 * p + 1, n), rng.integers(0, 2 * p + 1, n)
            for i in range(n):
                out[i] = padded[i, :, dy[i]: dy[i] + h, dx[i]: dx[i] + w]
        if self.flip:
            flip = rng.random(n) < 0.5
            out[flip] = out[flip, :, :, ::-1]
        if self.contrast:
            mean = out.mean(axis=(1, 2, 3), keepdims=True)
            out = mean + (out - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast, (n, 1, 1, 1))
        if self.brightness:
            out = out + rng.uniform(-self.brightness, self.brightness, (n, 1, 1, 1))
        return out.astype(x.dtype, copy=False)


def batches(data: Dataset, batch: int, seed: int = 0, shuffle: bool = True,
            augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None) -> Iterator[dict]:
    """Feed dicts of `batch` examples (the last, partial batch is dropped: compiled shapes are
    static); shuffled and augmented from `seed`. Node-classification sets give one full-graph
    batch per call."""
    if data.mask is not None:
        yield data.feeds()
        return
    if batch > len(data):
        raise InputError(f"batch {batch} is larger than the data set ({len(data)} examples)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data)) if shuffle else np.arange(len(data))
    for start in range(0, len(data) - batch + 1, batch):
        idx = order[start: start + batch]
        x = data.x[idx]
        if augment is not None:
            x = augment(x, rng)
        yield {data.input_name: x, "labels": data.labels[idx]}


# -- evaluation -------------------------------------------------------------------------------
def predict_probs(trainer, data: Dataset, transforms: Sequence[Callable[[np.ndarray], np.ndarray]] = ()) -> np.ndarray:
    """Softmax probabilities for every example, in compiled-batch chunks (the last chunk padded
    with zeros and the padding dropped). With `transforms` (test-time augmentation), each
    transform's prediction is averaged with the plain one."""
    if data.mask is not None:
        return _softmax(trainer.predict(data.feeds())[0])
    batch = trainer.forward.inputs[0].type.shape[0]
    views = [data.x, *(t(data.x) for t in transforms)]
    total = 0.0
    for x in views:
        probs = []
        for start in range(0, len(x), batch):
            chunk = x[start: start + batch]
            real = len(chunk)
            if real < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - real, *chunk.shape[1:]), chunk.dtype)])
            probs.append(_softmax(trainer.predict({data.input_name: chunk})[0])[:real])
        total = total + np.concatenate(probs)
    return total / len(views)


def evaluate(trainer, data: Dataset, transforms: Sequence[Callable[[np.ndarray], np.ndarray]] = ()) -> dict:
    """Accuracy and mean cross-entropy of the trainer's inference form over a whole data set."""
    probs = predict_probs(trainer, data, transforms)
    keep = data.mask if data.mask is not None else np.ones(len(data.labels), bool)
    picked = probs[np.arange(len(data.labels)), data.labels][keep]
    hits = (probs.argmax(axis=1) == data.labels)[keep]
    return {"accuracy": float(hits.mean()), "loss": float(-np.log(np.maximum(picked, 1e-12)).mean()),
            "examples": int(keep.sum())}


def hflip(x: np.ndarray) -> np.ndarray:
    """Horizontal flip of an NCHW batch (a test-time augmentation transform)."""
    return np.ascontiguousarray(x[..., ::-1])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
