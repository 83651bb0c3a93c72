"""Peak-RSS probes of the current process (Linux ``/proc``), shared by the memory benchmarks.

``reset_peak_rss()`` resets the kernel's peak mark, ``peak_rss_kib()`` reads it and
``status_kib("VmRSS")`` the current resident size, all in KiB.
"""

from __future__ import annotations

import resource
from pathlib import Path


def status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``"VmRSS"``, ``"VmHWM"``), None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_kib() -> int:
    """Peak RSS since the last reset (VmHWM), else the process's lifetime maximum."""
    hwm = status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
