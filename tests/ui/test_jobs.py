"""ui.jobs: a job's thread, its progress, result and errors; events (never sleeps) decide."""

from __future__ import annotations

import threading

from core.errors import ConfigError
from ui import jobs


def test_a_job_reports_progress_while_it_runs_then_its_result():
    reached, release = threading.Event(), threading.Event()

    def fn(progress):
        progress("train", 1.7, "half way")  # fractions are clamped to [0, 1]
        reached.set()
        release.wait(10)
        return 42

    job = jobs.start_thread("x", fn)
    assert reached.wait(10)
    snap = job.snapshot()
    assert snap["done"] is False and snap["fraction"] == 1.0 and snap["message"] == "half way"
    assert snap["stage"] == "train" and snap["error"] is None
    release.set()
    job.thread.join(10)
    assert job.done and job.result == 42 and job.error is None
    assert job.snapshot()["message"] == "done" and job.finished >= job.started


def test_errors_become_messages_that_name_the_problem():
    def bad_config(progress):
        raise ConfigError("fraction", "must be in (0, 1]")

    def bug(progress):
        raise ZeroDivisionError("division by zero")

    for fn, message in (
        (bad_config, "fraction: must be in (0, 1]"),
        (bug, "ZeroDivisionError: division by zero"),
    ):
        job = jobs.start_thread("y", fn)
        job.thread.join(10)
        assert job.done and job.result is None and job.error == message


def test_cancel_raises_in_the_worker_at_its_next_progress_report():
    reported, go = threading.Event(), threading.Event()
    after = []

    def fn(progress):
        progress("train", 0.1, "epoch 1")
        reported.set()
        go.wait(10)
        progress("train", 0.2, "epoch 2")  # raises Cancelled: nothing below runs
        after.append("ran on")
        return 42

    job = jobs.start_thread("z", fn, "the training")
    assert reported.wait(10)
    job.cancel()
    assert job.snapshot()["message"].startswith("cancelling")
    go.set()
    job.thread.join(10)
    assert job.done and job.cancelled and job.result is None and after == []
    assert job.error == "Cancelled: the training was cancelled by the user"


def test_a_result_that_arrives_after_cancel_is_discarded():
    go = threading.Event()

    def fn(progress):
        go.wait(10)  # no progress report after Cancel: the work ends normally
        return 42

    job = jobs.start_thread("w", fn)
    job.cancel()
    go.set()
    job.thread.join(10)
    assert job.cancelled and job.result is None and job.error.startswith(jobs.CANCELLED)
