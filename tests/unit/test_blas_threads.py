"""The server caps NumPy's BLAS threads (baimo/blas_threads.py)."""

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from baimo.blas_threads import limit_blas_threads


def blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_the_cap_applies_to_the_loaded_blas_and_can_be_set_by_environment(monkeypatch) -> None:
    with threadpool_limits(limits=None):  # restores the process's limits afterwards
        threadpool_limits(limits=2, user_api="blas")
        assert limit_blas_threads() == 1
        assert blas_threads() and set(blas_threads()) == {1}
        monkeypatch.setenv("BAIMO_BLAS_THREADS", "2")
        assert limit_blas_threads() == 2
        assert set(blas_threads()) <= {2, 1}  # a 1-core machine keeps 1


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        limit_blas_threads(0)
