"""Subprocesses in tests get a guard against a hang, never a time limit: a loaded 2-core machine may run a test many
times slower than an idle one, and that is not a failure. Timing belongs in bench/."""
import os, subprocess

import pytest

HANG_GUARD = float(os.environ.get('FMCE_TEST_HANG_GUARD', 5400))    # seconds; CI's whole budget


def run(cmd, **kw):
    "`subprocess.run(cmd, capture_output=True, text=True, **kw)`, failing with a plain message if it hangs."
    try: return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD, **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(map(str, cmd))[:300]} was still running after {HANG_GUARD:.0f} s and was stopped. This "
                    f"guard only catches a hang; if the machine was merely loaded, set FMCE_TEST_HANG_GUARD to more "
                    f"seconds. Its last output: {(e.stdout or '')[-1000:]!s}", pytrace=False)
