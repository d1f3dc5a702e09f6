"""The deterministic primitives of hear-preprocess 2021.1.1 (hear_preprocess.md §3).

Two RNG families: numpy's legacy ``RandomState`` seeded with :func:`str2int` for row shuffles (what pandas
``DataFrame.sample(frac=1, random_state=seed)`` does), and Python's ``random.Random(<string>)`` for shuffling
sorted split keys. Keys are always sorted (code-point order) before they are shuffled.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")

STR2INT_MODULUS = 2**32 - 1  # hear-preprocess's modulus (not 2**32)


def str2int(text: str) -> int:
    """SHA-1 of the UTF-8 bytes as a big-endian integer, modulo 2**32 - 1."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % STR2INT_MODULUS


def pandas_permutation(n: int, seed: int) -> np.ndarray:
    """Row order of ``DataFrame.sample(frac=1, random_state=seed)``: row i of the output is input row ``perm[i]``."""
    return np.random.RandomState(seed).permutation(n)


def shuffle_rows(frame: pd.DataFrame, seed_name: str) -> pd.DataFrame:
    """``frame.sample(frac=1, random_state=str2int(seed_name)).reset_index(drop=True)``."""
    return frame.iloc[pandas_permutation(len(frame), str2int(seed_name))].reset_index(drop=True)


def shuffled(items: Iterable[T], seed: str) -> list[T]:
    """A fresh list of ``items`` shuffled with ``random.Random(seed).shuffle``."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def array_split(items: Sequence[T], k: int) -> list[list[T]]:
    """``numpy.array_split`` on a list: k contiguous chunks, the first ``len % k`` one item longer."""
    base, extra = divmod(len(items), k)
    chunks, start = [], 0
    for i in range(k):
        stop = start + base + (1 if i < extra else 0)
        chunks.append(list(items[start:stop]))
        start = stop
    return chunks
