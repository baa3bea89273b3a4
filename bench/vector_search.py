"""Exact vector search with NumPy against faiss (``IndexFlatIP``), in one run.

    .venv/bin/python bench/vector_search.py                      # 10k and 100k passages
    .venv/bin/python bench/vector_search.py --sizes 10000 --dimensions 1536

For each corpus size it makes random unit vectors (float32, like the saved index's),
then times, per query, ``ragbus.retrieval.vectors.top_k`` (a matrix-vector product and a
partial sort, what the dense retriever runs) and faiss's exact inner-product index, on
the same queries: one question at a time (what a retrieve stage does) and batches of
16. It prints a Markdown table of median and p99 milliseconds per query and the ratio
faiss/NumPy, plus the time to load each (faiss copies the vectors into its index).
faiss is not a dependency of ragbus: ``pip install faiss-cpu`` to run this.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

# Both libraries get the same number of threads (OpenBLAS reads this when NumPy loads).
_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
os.environ["OPENBLAS_NUM_THREADS"] = _THREADS
os.environ["OMP_NUM_THREADS"] = _THREADS

import numpy as np  # noqa: E402

from ragbus.retrieval.vectors import Matrix, normalized, top_k  # noqa: E402

#: Nearest passages asked for per query (RAGBUS_TOP_K's default is 4; hybrid asks 20).
K = 20


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _time(
    searches: list[Callable[[Matrix], Any]], queries: Matrix, batch: int
) -> list[list[float]]:
    """Milliseconds per query of each of ``searches`` over ``queries`` taken ``batch`` at
    a time, the searches taking turns on each batch (so the machine's noise falls on
    all of them alike)."""
    timings: list[list[float]] = [[] for _ in searches]
    for search in searches:
        search(queries[:batch])  # warm up
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch]
        for search, times in zip(searches, timings, strict=True):
            began = time.perf_counter()
            search(chunk)
            times.append((time.perf_counter() - began) * 1000 / len(chunk))
    return timings


def _faiss_search(index: Any, queries: Matrix) -> Any:
    return index.search(queries, K)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dimensions", type=int, default=384)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument(
        "--threads", type=int, default=1, help="threads of each library (default 1)"
    )
    arguments = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(arguments.threads)
    generator = np.random.default_rng(7)
    print(
        f"dimensions {arguments.dimensions}, k {K}, {arguments.queries} queries, "
        f"{arguments.threads} thread(s) each, faiss {faiss.__version__}, numpy {np.__version__}\n"
    )
    print("| passages | batch | NumPy median / p99 ms | faiss median / p99 ms | faiss / NumPy |")
    print("|---|---|---|---|---|")
    loads = []
    for size in arguments.sizes:
        vectors = normalized(generator.standard_normal((size, arguments.dimensions)))
        queries = normalized(generator.standard_normal((arguments.queries, arguments.dimensions)))
        began = time.perf_counter()
        index = faiss.IndexFlatIP(arguments.dimensions)
        index.add(vectors)
        faiss_load_ms = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        copy = np.ascontiguousarray(vectors.copy())
        numpy_load_ms = (time.perf_counter() - began) * 1000
        loads.append((size, numpy_load_ms, faiss_load_ms))
        # the same answers: both exact
        (ours,) = top_k(copy, queries[:1], K)
        _, ids = index.search(queries[:1], K)
        assert [row for row, _ in ours] == [int(i) for i in ids[0]]
        searches = [partial(top_k, copy, k=K), partial(_faiss_search, index)]
        for batch in (1, 16):
            with_numpy, with_faiss = _time(searches, queries, batch)
            ratio = statistics.median(with_faiss) / statistics.median(with_numpy)
            print(
                f"| {size:,} | {batch} | {statistics.median(with_numpy):.3f} / "
                f"{_percentile(with_numpy, 0.99):.3f} | {statistics.median(with_faiss):.3f} / "
                f"{_percentile(with_faiss, 0.99):.3f} | {ratio:.2f} |"
            )
    print()
    for size, numpy_ms, faiss_ms in loads:
        print(f"load {size:,} vectors: NumPy {numpy_ms:.1f} ms, faiss {faiss_ms:.1f} ms")


if __name__ == "__main__":
    main()
