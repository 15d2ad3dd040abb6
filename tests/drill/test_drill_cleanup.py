"""Ctrl-C in the middle of a drill stops every process the lab started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab_procs import Procs


def _lab_pids(marker: str) -> list[int]:
    """PIDs of processes whose command line mentions ``marker`` (the drill's own out dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and "shieldwall.drill.shop" in cmd:
            pids.append(int(entry))
    return pids


def _as_from_a_terminal() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupting_a_drill_stops_its_backends(procs: Procs, tmp_path: Path) -> None:
    out = tmp_path / "lab"
    err = tmp_path / "drill.stderr"
    with open(err, "wb") as fh:
        # as from a terminal: SIGINT delivered and handled by default, whatever
        # the test runner's process inherited
        drill = procs.start([sys.executable, "-m", "shieldwall.cli", "drill", "flood", "--against",
                             "none", "--duration", "60", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=fh, preexec_fn=_as_from_a_terminal)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_lab_pids(str(out))) < 2:
        time.sleep(0.2)
    try:
        backends = _lab_pids(str(out))
        assert len(backends) == 2, "the drill did not start its two backends"
        time.sleep(1.0)
        os.kill(drill.pid, signal.SIGINT)
        try:
            drill.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("the drill did not exit within 30 s of SIGINT; its stderr ends: "
                                 + err.read_text(errors="replace")[-2000:]) from None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _lab_pids(str(out)):
            time.sleep(0.2)
        assert _lab_pids(str(out)) == []
        assert not (out / "report.json").exists()
    finally:
        # the lab starts each process in a session of its own, out of reach of
        # the procs fixture's killpg of the drill: when this test fails, its
        # backends are stopped here by PID
        for pid in _lab_pids(str(out)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_every_process_s_exit_is_recorded_even_when_it_goes_before_its_turn(tmp_path: Path) -> None:
    """stop_all asks all to stop, then waits for each in turn: a process that exits
    while an earlier one is still being waited for (nginx, on a loaded machine) still
    has its exit in the history the drill report shows; one the drill killed stays killed."""
    from shieldwall.drill.procs import Lab

    slow = "import signal, time\nsignal.signal(signal.SIGTERM, lambda *a: None)\ntime.sleep(60)\n"
    with Lab(tmp_path) as lab:
        quick = lab.python("quick", "-c", "import time; time.sleep(60)")
        lab.python("slow", "-c", slow)  # waited for first (stop_all goes in reverse order)
        killed = lab.python("killed", "-c", "import time; time.sleep(60)")
        time.sleep(0.5)
        lab.kill("killed")
        lab.stop_all(grace=1.0)
        assert [e for e, _ in lab.procs["quick"].history] == ["start", "exit"]
        assert [e for e, _ in lab.procs["slow"].history] == ["start", "exit"]
        assert [e for e, _ in lab.procs["killed"].history] == ["start", "kill"]
        for m in (quick, killed, lab.procs["slow"]):
            assert m.proc is not None and m.proc.poll() is not None
