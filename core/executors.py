"""Where sweep cells run: in this process (`local`) or as Ray tasks (`ray`).

`map_cells(fn, specs, executor=..., address=...)` yields `(index, result)` as cells finish.
`fn` must be a pure function of its spec (no run-store access): only the driver writes the
store, so Ray workers never share the SQLite file. Ray is optional
(`pip install -r requirements-scale.txt`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from core.errors import ConfigError

EXECUTORS = ("local", "ray")
PROJECT_ROOT = str(Path(__file__).resolve().parents[1])


def _local(fn: Callable[[Any], Any], specs: Sequence[Any]) -> Iterator[tuple[int, Any]]:
    for i, spec in enumerate(specs):
        yield i, fn(spec)


def _ray(fn: Callable[[Any], Any], specs: Sequence[Any], address: str | None,
         num_cpus: int | None) -> Iterator[tuple[int, Any]]:  # fmt: skip
    try:
        import ray
    except ImportError as e:
        raise ConfigError("executor", "ray is not installed; run "
                          "`pip install -r requirements-scale.txt`") from e  # fmt: skip
    started_here = not ray.is_initialized()
    if started_here:
        # Workers import `core` from this checkout (same path on every node of a cluster) and
        # use one thread each: several torch processes per node would oversubscribe its cores.
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [PROJECT_ROOT, os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise ConfigError("--address", f"cannot connect to a Ray cluster at {address!r}: {e}") from e
    try:
        remote = ray.remote(num_cpus=1)(fn)
        pending = {remote.remote(spec): i for i, spec in enumerate(specs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def map_cells(fn: Callable[[Any], Any], specs: Sequence[Any], *, executor: str = "local",
              address: str | None = None, num_cpus: int | None = None) -> Iterator[tuple[int, Any]]:  # fmt: skip
    """Run `fn(spec)` for every spec; yield (index into specs, result) in completion order."""
    if executor not in EXECUTORS:
        raise ConfigError("executor", f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}")
    if address and executor != "ray":
        raise ConfigError("--address", "only used with --executor ray")
    if executor == "local":
        return _local(fn, specs)
    return _ray(fn, specs, address, num_cpus)
