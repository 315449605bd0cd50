"""Soak: does a long run grow?  (A graph that is not finalized lets an op created inside the loop grow it, and
memory and step time with it, without any error.)  RSS and step time after 100 and after 5,000 steps must agree
within 5%."""

import collections
import dataclasses
import os
import re
import subprocess

import numpy as np

from bench import harness
from bench.faults.runs import main_command

PROGRESS_LINE = re.compile(r" step (\d+) \| ([\d.]+) img/s")


def _rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) * 1024


def _cpu_seconds(pid):
    """User + system CPU time of a process so far (all its threads)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class SoakPoint:
    step: int
    rss_bytes: int  # of the training process, read when it logged `step`
    step_seconds: float  # median over `windows` windows of 100 steps next to `step`: wall time per step
    cpu_seconds: float  # the same for the process's CPU time per step
    windows: int


def soak(work_dir, steps=5000, early=100, windows=10):
    """Trains the tiny model (small fully connected layers) for `steps` steps
    through main.py; returns SoakPoints for step `early` and step `steps`.

    RSS is read from /proc when the run logs that step.  Step times are
    medians over `windows` windows of 100 steps (after `early`; before
    `steps`): wall time from the run's own progress lines (img/s), CPU time
    from /proc.  On this shared machine single windows vary by 2x with the
    other jobs' load; a graph or loop that grows would slow all of them.
    Samples and checkpoints come only at the end, so both points see the same
    work per step (summaries every 10 steps).
    """
    window = 100
    if steps < early + 2 * windows * window:
        raise ValueError(f"--soak_steps must be at least {early + 2 * windows * window}")
    command = main_command(work_dir, max_steps=steps, gfc_dim=16, dfc_dim=16, log_freq=window,
                           sample_freq=steps + 1, ckpt_freq=steps + 1, summary_freq=10)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    wall, cpu, rss, tail = {}, {}, {}, collections.deque(maxlen=20)
    for line in process.stderr:
        tail.append(line)
        match = PROGRESS_LINE.search(line)
        if match:
            step = int(match.group(1))
            wall[step] = harness.TINY["batch_size"] / float(match.group(2))  # one D update per step
            cpu[step] = _cpu_seconds(process.pid)
            if step in (early, steps):
                rss[step] = _rss_bytes(process.pid)
    if process.wait() != 0 or set(rss) != {early, steps}:
        raise RuntimeError(f"soak run failed (exit {process.returncode}): {''.join(tail)}")

    def point(step, first):
        ends = range(first + window, first + (windows + 1) * window, window)  # a line reports the 100 steps before it
        return SoakPoint(step, rss[step], float(np.median([wall[end] for end in ends])),
                         float(np.median([(cpu[end] - cpu[end - window]) / window for end in ends])), windows)

    return point(early, early), point(steps, steps - windows * window)


def soak_row(points, tolerance=0.05):
    early, late = points
    changes = [late.rss_bytes / early.rss_bytes - 1, late.step_seconds / early.step_seconds - 1,
               late.cpu_seconds / early.cpu_seconds - 1]
    within = all(abs(change) <= tolerance for change in changes)
    return (f"soak: tiny model, {late.step} steps of `main.py --train`",
            f"RSS, and time per step (median of {early.windows} windows of 100 steps), after {early.step} and "
            f"after {late.step} steps",
            f"RSS {early.rss_bytes / 2**20:.0f} MB -> {late.rss_bytes / 2**20:.0f} MB ({changes[0]:+.1%}); step "
            f"{early.step_seconds * 1000:.1f} ms -> {late.step_seconds * 1000:.1f} ms ({changes[1]:+.1%}); CPU "
            f"{early.cpu_seconds * 1000:.1f} ms -> {late.cpu_seconds * 1000:.1f} ms per step ({changes[2]:+.1%}): "
            f"{'within' if within else 'NOT within'} {tolerance:.0%}")
