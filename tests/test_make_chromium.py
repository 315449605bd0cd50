"""`make test` installs Debian's chromium for the browser test when it is missing and the user may install it.

The Makefile's `chromium` target runs against stand-ins for apt-get, id and sudo placed first on PATH, which
record how they were called, so no package is installed and nothing needs the network.  `-o .venv/.installed`
keeps make from building the virtualenv the target otherwise depends on.
"""

import os
import shutil
import subprocess

import pytest
from conftest import REPO

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed (`make test` itself needs it)")

STAND_INS = {
    "apt-get": 'echo "apt-get $*" >> "$CALLS"; exit "${APT_STATUS:-0}"',
    "id": '[ "$1" = -u ] && echo "$FAKE_UID"',
    "sudo": '[ "$1" = -n ] && shift; [ "$SUDO_ALLOWED" = yes ] || exit 1; echo "sudo $*" >> "$CALLS"; exec "$@"',
}


def run_target(tmp_path, chromium="/nonexistent/chromium", uid=0, sudo_allowed=False, apt_status=0):
    """Runs `make chromium`; returns (what it printed, the stand-ins' calls in order)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STAND_INS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls),
           "FAKE_UID": str(uid), "SUDO_ALLOWED": "yes" if sudo_allowed else "no", "APT_STATUS": str(apt_status)}
    result = subprocess.run(
        [MAKE, "--no-print-directory", "-o", ".venv/.installed", "chromium", f"CHROMIUM={chromium}",
         f"CHROMIUM_LOG={tmp_path / 'apt.log'}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr  # never fails `make test`: the browser test skips instead
    return result.stdout.strip().splitlines(), calls.read_text().splitlines()


def test_root_installs_chromium_with_apt_get_quietly(tmp_path):
    printed, calls = run_target(tmp_path, uid=0)
    assert calls == ["apt-get update -qq", "apt-get install -y -qq chromium"]
    assert len(printed) == 1 and "installing Debian's chromium" in printed[0]


def test_passwordless_sudo_installs_through_sudo(tmp_path):
    printed, calls = run_target(tmp_path, uid=1000, sudo_allowed=True)
    assert calls == ["sudo true", "sudo apt-get update -qq", "apt-get update -qq",
                     "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                     "apt-get install -y -qq chromium"]


def test_user_who_may_not_install_gets_one_line_saying_how(tmp_path):
    printed, calls = run_target(tmp_path, uid=1000, sudo_allowed=False)
    assert calls == []
    assert printed == ["make: chromium is missing and installing it needs root: sudo apt-get install chromium"]


def test_failed_install_is_one_line_and_make_test_goes_on(tmp_path):
    printed, calls = run_target(tmp_path, uid=0, apt_status=100)
    assert calls == ["apt-get update -qq"]  # install is not tried after a failed update
    assert printed[-1] == f"make: apt-get could not install chromium (see {tmp_path / 'apt.log'})"


def test_installed_chromium_is_left_alone(tmp_path):
    printed, calls = run_target(tmp_path, chromium=shutil.which("sh"), uid=0)
    assert (printed, calls) == ([], [])
