"""How many threads NumPy's BLAS may use in the server process.

OpenBLAS starts one thread per core and keeps them spinning for a while after each call. In the server the
matrix products are small (a routing decision's scoring, a query's USE embedding) and run between requests on
the same 2 cores that llama-server uses, so the spinning threads steal the core the next embedding needs:
measured at load ~6, a prompt embedding took 45 ms at p50 with 2 BLAS threads and 16 ms with one, the router's
scoring 14 ms and 1.1 ms (docs/routing.md, "After the USE query path"). Knowledge ingestion embeds in its own
worker processes and sets its own limit per call.
"""

from __future__ import annotations

import os

ENV = "BAIMO_BLAS_THREADS"
DEFAULT = 1


def limit_blas_threads(threads: int | None = None) -> int:
    """Cap the BLAS thread pools already loaded in this process (NumPy's OpenBLAS) at `threads`, by default
    `BAIMO_BLAS_THREADS` or 1, for the rest of the process's life. Returns the cap applied. Call it after NumPy
    is imported (threadpoolctl only sees loaded libraries). Raises ValueError for a cap below 1."""
    import numpy  # noqa: F401  (loads the BLAS library so threadpoolctl can find it)
    from threadpoolctl import threadpool_limits

    cap = threads if threads is not None else int(os.environ.get(ENV, DEFAULT))
    if cap < 1:
        raise ValueError(f"{ENV} must be at least 1, got {cap}")
    threadpool_limits(limits=cap, user_api="blas")
    return cap
