"""What /proc says about a process a test started: its children (a prefork pool), its resident memory,
whether it holds the port it was told to listen on.

    pool = children(worker.process.pid)     # the prefork pool's processes
    os.kill(pool[0], signal.SIGKILL)
    print(rss_bytes(receiver.pid) / 2**20, "MiB")
    assert listening(receiver.pid, port)    # not another process that took the port first
"""

from __future__ import annotations

import contextlib
from pathlib import Path

PROC = Path("/proc")


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (field 4 of /proc/<pid>/stat, after the command name)."""
    found = []
    for stat in PROC.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def rss_bytes(pid: int) -> int:
    """The resident set size of `pid` (VmRSS of /proc/<pid>/status); OSError once it is gone."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"process {pid} reports no VmRSS (a zombie?)")


def listening(pid: int, port: int) -> bool:
    """Whether `pid` itself holds the socket listening on `port` (another process may have taken a port
    that `free_port` gave out: then whatever answers there is not the process a test started)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for row in (PROC / "net" / table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(fields[9])
    for fd in (PROC / str(pid) / "fd").glob("*"):
        with contextlib.suppress(OSError):
            if fd.readlink().name.removeprefix("socket:[").removesuffix("]") in inodes:
                return True
    return False
