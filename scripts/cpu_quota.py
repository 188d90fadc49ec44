#!/usr/bin/env python3
"""How many CPUs this process may really use, and how many threads a model runner should get.

Why: a container (Binder's, a CI runner's) sees all of the host's cores, but its cgroup may
allow only about one CPU.  Ollama starts a runner thread per physical core it sees; on an
oversubscribed CPU those threads spin waiting for each other (smollm2 fell from 21 to 0.4
tokens/s that way).  So scripts/local-ollama asks this script and, when the quota or the
affinity mask allows fewer CPUs than the machine has, writes ``PARAMETER num_thread N`` into
the models it creates.

Usage: cpu_quota.py            prints "cpus=<allowed, may be fractional> visible=<N> threads=<T|>"
       cpu_quota.py --threads  prints T, or nothing when Ollama's own choice is right
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path


def cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 else None
    except (OSError, ValueError):
        return None


def visible_cpus() -> int:
    """CPUs the scheduler lets this process run on (the affinity mask), else all online ones."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def runner_threads(quota: float | None, visible: int, online: int) -> int | None:
    """Threads for a model runner, or None when Ollama's default (a thread per core) fits.

    Ollama counts the machine's cores, not the cgroup's or the affinity mask's; when either
    allows fewer, the runner gets that many threads (at least one).
    """
    allowed = float(visible) if quota is None else min(float(visible), quota)
    if allowed >= online:
        return None
    return max(1, math.floor(allowed))


def main(argv: list[str]) -> int:
    quota = cgroup_quota()
    visible = visible_cpus()
    online = os.cpu_count() or visible
    threads = runner_threads(quota, visible, online)
    if "--threads" in argv:
        print("" if threads is None else threads)
    else:
        allowed = visible if quota is None else min(visible, quota)
        print(f"cpus={allowed:g} visible={visible} online={online} threads={'' if threads is None else threads}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
