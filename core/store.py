"""The run store: one SQLite database (WAL) plus checkpoint files beside it.

Rows: id, created (ISO time), kind (run / cell / model), key (hash of what makes a result
reusable), status (running / done / failed), config JSON, result JSON, seconds, error.
A run starts as `running` and ends `done` or `failed`; a process killed half-way leaves a
`running` row whose pid is gone, which `list_runs` reports as `failed`.
Checkpoints are safetensors files written to a temp file and renamed (atomic), loaded
without unpickling anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from core.errors import StoreError

ENV_VAR = "SAPS_STORE"
DEFAULT_DIR = "runs"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'run',
    key TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    config TEXT NOT NULL,
    result TEXT,
    seconds REAL,
    error TEXT,
    pid INTEGER
);
CREATE INDEX IF NOT EXISTS runs_key ON runs (key, status);
"""


def config_key(obj: Any) -> str:
    """A stable hash of a JSON-able object (sorted keys): what identifies a reusable result."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def default_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """SQLite run store in folder `path` (runs.db + checkpoints/)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.root = Path(path) if path is not None else default_path()
        if self.root.suffix == ".db":
            self.root, self.db_path = self.root.parent, self.root
        else:
            self.db_path = self.root / "runs.db"
        self.checkpoints = self.root / "checkpoints"
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.executescript(SCHEMA)
        except (OSError, sqlite3.DatabaseError) as e:
            raise StoreError(f"run store {self.db_path}: cannot open ({e})") from e

    @contextmanager
    def _connect(self):
        con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA busy_timeout=30000")
            con.row_factory = sqlite3.Row
            yield con
        except sqlite3.DatabaseError as e:
            raise StoreError(f"run store {self.db_path}: {e}") from e
        finally:
            con.close()

    # -- rows ---------------------------------------------------------------------------
    def start(self, config: dict, *, kind: str = "run", key: str | None = None) -> int:
        """Insert a `running` row and return its id."""
        created = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO runs (created, kind, key, status, config, pid) VALUES (?,?,?,?,?,?)",
                (created, kind, key, "running", json.dumps(config), os.getpid()),
            )
            return int(cur.lastrowid)

    def finish(self, run_id: int, result: dict, seconds: float) -> None:
        with self._connect() as con:
            con.execute(
                "UPDATE runs SET status='done', result=?, seconds=?, error=NULL WHERE id=?",
                (json.dumps(result), seconds, run_id),
            )

    def fail(self, run_id: int, error: str, seconds: float | None = None) -> None:
        with self._connect() as con:
            con.execute(
                "UPDATE runs SET status='failed', error=?, seconds=? WHERE id=?",
                (error[:2000], seconds, run_id),
            )

    @contextmanager
    def recording(self, config: dict, *, kind: str = "run", key: str | None = None):
        """Context manager: a `running` row that ends `done` (call .finish) or `failed`."""
        run_id = self.start(config, kind=kind, key=key)
        start = time.perf_counter()
        box = {"id": run_id, "finished": False}
        try:
            yield box
        except BaseException as e:  # KeyboardInterrupt too: the row must not stay `running`
            self.fail(run_id, f"{type(e).__name__}: {e}", time.perf_counter() - start)
            raise
        if not box["finished"]:
            self.fail(run_id, "ended without a result", time.perf_counter() - start)

    def _row(self, row: sqlite3.Row) -> dict:
        d = dict(row)
        if d["status"] == "running" and not _pid_alive(d.get("pid")):
            d["status"] = "failed"
            d["error"] = d.get("error") or "process ended before the run finished"
        for k in ("config", "result"):
            if d.get(k) is not None:
                try:
                    d[k] = json.loads(d[k])
                except json.JSONDecodeError:
                    d[k] = None
                    d["status"] = "failed"
                    d["error"] = f"stored {k} is not valid JSON"
        return d

    def get(self, run_id: int) -> dict:
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"run {run_id} not found in {self.db_path}")
        return self._row(row)

    def list_runs(self, *, kind: str | None = None, limit: int = 100) -> list[dict]:
        q, args = "SELECT * FROM runs", []
        if kind is not None:
            q, args = q + " WHERE kind=?", [kind]
        with self._connect() as con:
            rows = con.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._row(r) for r in rows]

    def claim(self, key: str, config: dict, *, kind: str = "cell") -> int | None:
        """Atomically start a `running` row for `key` unless one is done or running elsewhere.

        Returns the new row id, or None when a finished row exists or a live process holds
        the key (so two sweeps sharing a store never compute or store the same cell twice).
        Rows of dead processes do not block.
        """
        created = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # one writer decides at a time
            try:
                rows = con.execute(
                    "SELECT id, status, pid FROM runs WHERE key=? AND status IN ('done','running')",
                    (key,),
                ).fetchall()
                held = any(
                    r["status"] == "done" or (r["pid"] != os.getpid() and _pid_alive(r["pid"])) for r in rows
                )
                if held:
                    con.execute("COMMIT")
                    return None
                stale = [r["id"] for r in rows if r["status"] == "running"]
                for row_id in stale:
                    con.execute(
                        "UPDATE runs SET status='failed', error=? WHERE id=?",
                        ("process ended before the run finished", row_id),
                    )
                cur = con.execute(
                    "INSERT INTO runs (created, kind, key, status, config, pid) VALUES (?,?,?,?,?,?)",
                    (created, kind, key, "running", json.dumps(config), os.getpid()),
                )
                con.execute("COMMIT")
                return int(cur.lastrowid)
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def find_done(self, key: str) -> dict | None:
        """The newest finished row with `key`, or None."""
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM runs WHERE key=? AND status='done' ORDER BY id DESC LIMIT 1", (key,)
            ).fetchone()
        return self._row(row) if row is not None else None

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint_path(self, name: str) -> Path:
        return self.checkpoints / f"{name}.safetensors"

    def save_checkpoint(self, name: str, state: dict[str, torch.Tensor]) -> Path:
        """Write a state dict atomically (temp file + rename) as safetensors, with its content
        digest and its own name in the metadata (a file copied over another's name is refused)."""
        from safetensors.torch import save_file

        path = self.checkpoint_path(name)
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        fd, tmp = tempfile.mkstemp(dir=self.checkpoints, suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"sha256": _digest(tensors), "name": name})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def has_checkpoint(self, name: str) -> bool:
        return self.checkpoint_path(name).is_file()

    def load_checkpoint(
        self, name: str, like: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Read a checkpoint; a truncated or altered file, one saved under another name, or (with
        `like`) one whose tensor names, shapes or dtypes differ from `like`'s raises StoreError
        naming the file and the way out (delete it: it is recomputed on the next run)."""
        path = self.checkpoint_path(name)
        tensors = load_checkpoint_file(path, expect_name=name)
        if like is not None:
            problem = _mismatch(tensors, like)
            if problem:
                raise StoreError(f"checkpoint {path} does not fit: {problem}; {REMEDY}")
        return tensors

    # -- artifacts: a checkpoint plus a JSON sidecar (e.g. the seconds it took to compute) ----
    def load_artifact(
        self, name: str, like: dict[str, torch.Tensor] | None = None
    ) -> tuple[dict[str, torch.Tensor], dict] | None:
        """(tensors, meta) of a stored artifact, or None when either file is missing; `like` as
        in `load_checkpoint`."""
        meta_path = self.checkpoints / f"{name}.json"
        if not (self.has_checkpoint(name) and meta_path.is_file()):
            return None
        tensors = self.load_checkpoint(name, like)
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise StoreError(f"{meta_path} is not valid JSON ({e}); {REMEDY}") from e
        if not isinstance(meta, dict):
            raise StoreError(f"{meta_path} is not a JSON object; {REMEDY}")
        return tensors, meta

    def save_artifact(self, name: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Write tensors, then the sidecar (both atomic): a reader sees both or treats it as absent."""
        self.save_checkpoint(name, tensors)
        meta_path = self.checkpoints / f"{name}.json"
        tmp = meta_path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(meta_path)


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(
            tensors[k].numpy().tobytes()
            if tensors[k].dtype != torch.bfloat16
            else tensors[k].float().numpy().tobytes()
        )
    return h.hexdigest()


REMEDY = "delete it (and its .json) to recompute it on the next run"


def _mismatch(tensors: dict[str, torch.Tensor], like: dict[str, torch.Tensor]) -> str | None:
    """What differs between a loaded state and the expected one (names, shapes, dtypes), or None."""
    if set(tensors) != set(like):
        missing, extra = sorted(set(like) - set(tensors)), sorted(set(tensors) - set(like))
        return f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
    for k, t in tensors.items():
        if tuple(t.shape) != tuple(like[k].shape) or t.dtype != like[k].dtype:
            return f"{k!r} is {t.dtype} {tuple(t.shape)}, expected {like[k].dtype} {tuple(like[k].shape)}"
    return None


def load_checkpoint_file(path: str | os.PathLike, expect_name: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors checkpoint and verify its content digest (and, with `expect_name`, that
    it was saved under that name, for files that carry one)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise StoreError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise StoreError(f"checkpoint {path} is corrupt or truncated ({e}); {REMEDY}") from e
    if "sha256" in meta and meta["sha256"] != _digest(tensors):
        raise StoreError(f"checkpoint {path} was altered: its content does not match its digest; {REMEDY}")
    if expect_name is not None and meta.get("name", expect_name) != expect_name:
        raise StoreError(f"checkpoint {path} holds {meta['name']!r}, not {expect_name!r}; {REMEDY}")
    return tensors
