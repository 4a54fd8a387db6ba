"""A server started in a session of its own gets the caller's autogroup priority (labelserve_tools.local_server)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/autogroup").exists(),
                                reason="needs the kernel's autogroup scheduling (/proc/self/autogroup)")

CHILD = textwrap.dedent("""
    import subprocess, sys
    from pathlib import Path
    from labelserve_tools.local_server import share_priority
    Path("/proc/self/autogroup").write_text("7")  # lowering a priority needs no privilege
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        before = Path(f"/proc/{child.pid}/autogroup").read_text().split()[-1]
        share_priority(child.pid)
        after = Path(f"/proc/{child.pid}/autogroup").read_text().split()[-1]
        print(before, after)
    finally:
        child.kill()
        child.wait()
""")


def test_a_server_in_a_new_session_gets_the_callers_priority() -> None:
    # the caller runs in a session of its own too, so this test's own priority is left alone
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                            start_new_session=True, cwd=Path(__file__).resolve().parents[2])
    before, after = result.stdout.split()
    assert (before, after) == ("0", "7")
