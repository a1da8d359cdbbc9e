"""Datasets: the real image datasets of the experiment, the synthetic task family, and the cache.

``get_dataset(name, split)`` serves every name (see :func:`dataset_names`); items are
``(image uint8 [3, H, W], label)`` or ``(image, label, mask)`` with ``with_masks=True``.
"""

from .registry import DatasetInfo, dataset_names, describe_datasets, get_dataset, resolve_data_root
from .samples import ImageDataset

__all__ = ["DatasetInfo", "ImageDataset", "dataset_names", "describe_datasets", "get_dataset", "resolve_data_root"]
