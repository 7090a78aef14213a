"""The data a search trains on, verified and split, and the data cache that keeps it.

MNIST (_mnist.py) lands in a `Dataset` (_dataset.py); a verified copy is kept in the data cache
(_cache.py), which follows the user rather than the current folder.
"""

from __future__ import annotations

from search.data._cache import data_dir
from search.data._dataset import Dataset
from search.data._mnist import fetch, load_mnist

__all__ = ["Dataset", "data_dir", "fetch", "load_mnist"]
