"""Ray, for sweeps that outgrow one machine (`python -m core sweep --executor ray`).

`ray_session(address)` connects to a cluster (or starts a local one) with workers that import
`core` from this checkout and use one thread each. Cell functions run there must be pure
(no run-store access): only the driver writes the store, so workers never share the SQLite
file. Ray is optional (`pip install -r requirements-scale.txt`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import ConfigError

EXECUTORS = ("local", "ray")
PROJECT_ROOT = str(Path(__file__).resolve().parents[1])


def check_executor(executor: str, address: str | None) -> None:
    if executor not in EXECUTORS:
        raise ConfigError("executor", f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}")
    if address and executor != "ray":
        raise ConfigError("--address", "only used with --executor ray")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise ConfigError(
                "executor", "ray is not installed; run `pip install -r requirements-scale.txt`"
            ) from e


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Yield the `ray` module, initialised; shut down afterwards if this call started it."""
    check_executor("ray", address)
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        # Same checkout path on every node; one torch thread per task, else several tasks per
        # node oversubscribe its cores.
        pythonpath = os.pathsep.join(filter(None, [PROJECT_ROOT, os.environ.get("PYTHONPATH")]))
        kwargs: dict[str, Any] = {
            "runtime_env": {"env_vars": {"PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}},
            "log_to_driver": False,
        }
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise ConfigError("--address", f"cannot connect to a Ray cluster at {address!r}: {e}") from e
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
