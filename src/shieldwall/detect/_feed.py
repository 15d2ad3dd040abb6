"""The parsing process of ``shieldwall analyze``, started as early as the command can.

Everything imported before the fork delays the parsing process's whole run, and the
command's own process waits for that process's first part: so this module imports
only :mod:`multiprocessing`, the process runs :mod:`~shieldwall.detect.readers`'s
``_parse_child`` (imported there, after the fork), and the command imports the
readers after the fork, beside the child's own imports (numpy, Arrow).
:class:`ColumnFeed` is re-exported by :mod:`~shieldwall.detect.readers`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shieldwall.detect.columns import Columns, Counts
    from shieldwall.detect.readers import Counting, Parsed, ReadStats

PIPE_BYTES = 8 << 20
"""The pipe from the parsing process is asked to hold this much (Linux ``F_SETPIPE_SZ``;
without the privilege to exceed ``/proc/sys/fs/pipe-max-size``, that much): fewer,
larger writes and reads per part."""


def _child(p: Path, fmt: str, conn: Any, args: Any, args_parent: Any) -> None:
    """The parsing process's body (its imports made here, after the fork)."""
    from shieldwall.detect.readers import _parse_child

    _parse_child(p, fmt, conn, args, args_parent)


class ColumnFeed:
    """One file parsed (and counted) in a forked child process, started ahead of its
    consumer: the CLI starts it before it imports the detector and the report, so the
    child's imports (numpy, Arrow) and first chunks overlap the parent's.

    Why a process and not a thread: what parses a chunk (Arrow's tokenizer and kernels,
    and the Python around them: time stamps, the distinct strings made into ``str``)
    holds the GIL for a good part of its time, so on a thread it overlapped little with
    the window counting and the detector; in a process it runs on the other core, and
    the parent never imports Arrow or numpy. A part crosses as a pickle: the chunk's
    distinct strings and its counts, a small fraction of what making them cost. With
    ``counting`` (sent when the consumer starts) the child also counts each chunk per
    second (numpy group-bys): the parent only adds the counts to its windows.

    Where ``fork`` is not available, or other threads are running (a fork copies only
    the calling thread: a lock another thread held stays held in the child), or the
    child cannot be started, the parts are made on a thread (:func:`prefetch`) when
    consumed."""

    def __init__(self, p: Path, fmt: str) -> None:
        import multiprocessing as mp

        self.path, self.fmt = p, fmt
        self._child: Any = None
        if threading.active_count() > 1:
            return
        try:
            ctx = mp.get_context("fork")
            recv_end, send_end = ctx.Pipe(duplex=False)
        except (ValueError, OSError):
            return
        args_recv, args_send = ctx.Pipe(duplex=False)
        _grow_pipe(send_end.fileno())
        child = ctx.Process(target=_child, args=(p, fmt, send_end, args_recv, args_send),
                            name="shieldwall-parse", daemon=True)
        try:
            child.start()
        except OSError:
            for conn in (recv_end, send_end, args_recv, args_send):
                conn.close()
            return
        send_end.close()
        args_recv.close()
        self._child, self._recv, self._args = child, recv_end, args_send

    def parts(self, stats: ReadStats,
              counting: Counting | None = None) -> Iterator[list[Parsed] | Columns | Counts]:
        """The parts, in order (once); then the child's stats are added to ``stats``."""
        from shieldwall.detect.readers import _column_parts, _loads, prefetch

        child = self._child
        if child is None:
            yield from prefetch(_column_parts(self.path, self.fmt, stats, counting))
            return
        recv_end = self._recv
        try:
            try:
                self._args.send(counting)
            except OSError:
                pass  # the child has stopped: its word (or none) follows
            self._args.close()
            while True:
                try:
                    tag, item = _loads(recv_end.recv_bytes())
                except EOFError:
                    raise RuntimeError(f"the parsing process for {self.path} ended without a "
                                       f"word (exit code {child.exitcode})") from None
                if tag == "part":
                    yield item
                elif tag == "end":
                    done: ReadStats = item
                    stats.lines += done.lines
                    stats.unparsed += done.unparsed
                    stats.fast_lines += done.fast_lines
                    for sample in done.samples:
                        if len(stats.samples) < stats.max_samples:
                            stats.samples.append(sample)
                    return
                else:
                    raise item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the child (if it is still running) and reap it."""
        child = self._child
        if child is None:
            return
        self._child = None
        self._recv.close()
        self._args.close()
        if child.is_alive():
            child.join(1.0)
            if child.is_alive():
                child.terminate()
                child.join()



def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        setsz = getattr(fcntl, "F_SETPIPE_SZ", 1031)
        try:
            fcntl.fcntl(fd, setsz, PIPE_BYTES)
        except PermissionError:  # above pipe-max-size without CAP_SYS_RESOURCE
            with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as fh:
                fcntl.fcntl(fd, setsz, min(PIPE_BYTES, int(fh.read())))
    except (ImportError, OSError, ValueError):
        pass  # a smaller pipe only means more writes and reads
