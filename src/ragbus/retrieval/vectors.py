"""Exact nearest-neighbour search over passage embeddings, with NumPy.

The vectors are kept unit-length (float32, one row per passage), so the inner product
is the cosine similarity; a search is one matrix-vector product and a partial sort.
NumPy rather than faiss: at the corpus sizes ragbus indexes (up to a few hundred
thousand passages) an exact flat search is what faiss would do too (``IndexFlatIP``),
and measured on this project's machines NumPy is as fast or faster for one query at a
time, with no extra dependency (docs/retrieval.md has the figures and the command).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from ragbus.errors import ConfigurationError

#: The file of a saved index that holds the vectors (``numpy.save`` format).
VECTORS_NAME: Final = "vectors.npy"

Matrix = npt.NDArray[np.float32]


def normalized(vectors: npt.ArrayLike) -> Matrix:
    """``vectors`` (one per row) as float32 rows of length 1; a zero row stays zero.

    Parameters:
        vectors: a 2-D array (or nested lists) of numbers.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected one vector per row (2 dimensions), got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def top_k(vectors: Matrix, queries: Matrix, k: int) -> list[list[tuple[int, float]]]:
    """For each query row, the ``k`` rows of ``vectors`` with the largest inner product,
    best first, as (row, similarity) pairs.

    Parameters:
        vectors: the corpus, unit rows (``n x d``).
        queries: unit query rows (``q x d``).
        k: how many neighbours per query (at most ``n`` are returned).
    """
    count = vectors.shape[0]
    k = min(k, count)
    if k <= 0 or queries.shape[0] == 0:
        return [[] for _ in range(queries.shape[0])]
    similarities = queries @ vectors.T  # q x n; BLAS, the GIL released
    results: list[list[tuple[int, float]]] = []
    for row in similarities:
        # the k best in any order (linear time), then only those sorted
        candidates = np.argpartition(row, count - k)[count - k :]
        best = candidates[np.argsort(-row[candidates], kind="stable")]
        results.append([(int(index), float(row[index])) for index in best])
    return results


def save_vectors(path: Path, vectors: Matrix) -> None:
    """Write ``vectors`` to the ``.npy`` file ``path`` (no pickled objects)."""
    with path.open("wb") as file:
        np.save(file, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)


def load_vectors(path: Path, *, rows: int, dimensions: int) -> Matrix:
    """The vectors saved at ``path``, checked to be ``rows x dimensions`` float32.

    Raises :class:`~ragbus.errors.ConfigurationError` when the file is missing,
    unreadable or of another shape.

    Parameters:
        path: a file written by :func:`save_vectors`.
        rows: the number of passages it must hold.
        dimensions: the length of each vector.
    """
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the embeddings {path}: {exc}") from exc
    if matrix.dtype != np.float32 or matrix.shape != (rows, dimensions):
        raise ConfigurationError(
            f"the embeddings {path} hold {matrix.dtype} {matrix.shape}, the manifest says "
            f"float32 ({rows}, {dimensions}): rebuild the index with `ragbus index`"
        )
    return np.ascontiguousarray(matrix)


def stack(rows: Sequence[Matrix], dimensions: int) -> Matrix:
    """One matrix of ``rows`` (each ``1 x dimensions`` or ``dimensions``), in order."""
    if not rows:
        return np.zeros((0, dimensions), dtype=np.float32)
    return np.ascontiguousarray(np.vstack(rows), dtype=np.float32)
