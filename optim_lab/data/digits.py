"""scikit-learn's bundled handwritten digits (``load_digits``): 1 797 8x8 images.

Pixels (0..16) are scaled to [0, 1]. ``image=False`` (default) gives flat
64-feature rows for MLPs / softmax regression; ``image=True`` gives
``(8, 8, 1)`` NHWC images for CNNs. The split is deterministic in
``split_seed`` (default 80 % train: 1 437 train / 360 test). No download: the
data ships with scikit-learn.
"""

from __future__ import annotations

import numpy as np

from optim_lab import _validation
from optim_lab.data.dataset import Dataset
from optim_lab.data.dataset import DataSpec
from optim_lab.data.dataset import split

IMAGE_SHAPE = (8, 8, 1)


def digits(*, image: bool = False, train_fraction: float = 0.8,
           split_seed: int = 0) -> Dataset:
    """The digits dataset, flat or as images.

    Examples:
        >>> from optim_lab.data.digits import digits
        >>> ds = digits(image=True)
        >>> ds.train_x.shape, ds.test_x.shape, ds.spec.num_classes
        ((1437, 8, 8, 1), (360, 8, 8, 1), 10)
        >>> digits().spec.num_features
        64
    """
    from sklearn.datasets import load_digits

    _validation.check_choice("data.image", image, (True, False))
    _validation.check_range("data.train_fraction", train_fraction, 0.0, 1.0,
                            low_inclusive=False, high_inclusive=False)
    _validation.check_int("data.split_seed", split_seed, low=0)
    raw = load_digits()
    x = (raw.data / 16.0).astype(np.float32)
    y = raw.target.astype(np.int32)
    if image:
        x = x.reshape(-1, *IMAGE_SHAPE)
        spec = DataSpec(IMAGE_SHAPE, 10)
    else:
        spec = DataSpec(x.shape[1], 10)
    return split(x, y, train_fraction, split_seed, spec)
