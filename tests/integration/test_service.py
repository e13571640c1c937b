"""contrib/sqlfs.service (README.md "Run as a service"): systemd accepts every line of it, and it
keeps what the jail and the server need."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BINARY, ROOT

UNIT = os.path.join(ROOT, "contrib", "sqlfs.service")
INSTALLED = "/usr/local/bin/sqlfs"


def directives(text):
    """{key: [values]} of the unit's lines (comments aside)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    """Verified as shipped but with ExecStart at this build's binary (systemd-analyze checks
    that it is executable; the unit names where `make install` puts it). An unknown or
    misspelt directive, a bad value or section makes verify print, and fails here."""
    text = open(UNIT).read()
    assert f"ExecStart={INSTALLED} serve" in text
    unit = tmp_path / "sqlfs.service"
    unit.write_text(text.replace(INSTALLED, BINARY))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    # as shipped: at most the missing installed binary is reported
    r = subprocess.run(["systemd-analyze", "verify", UNIT], capture_output=True, text=True)
    rest = [ln for ln in (r.stdout + r.stderr).splitlines()
            if ln and f"Command {INSTALLED} is not executable" not in ln]
    assert not rest, rest


def test_the_unit_keeps_what_the_jail_needs():
    d = directives(open(UNIT).read())
    assert d["EnvironmentFile"] == ["/etc/sqlfs/sqlfs.env"]
    assert d["StateDirectory"] == ["sqlfs"] and "/var/lib/sqlfs" in d["ExecStart"][0]
    assert d["Restart"] == ["on-failure"] and d["Delegate"] == ["yes"]
    assert int(d["LimitNOFILE"][0]) >= 65536 and d["TasksMax"] == ["infinity"]
    assert d["KillMode"] == ["mixed"] and d["OOMPolicy"] == ["continue"]
    assert d["ProtectSystem"] == ["strict"] and "/var/lib/sqlfs" in d["ReadWritePaths"]
    for on in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelModules"):
        assert d[on] == ["yes"], on
    # each of these would break the jail or narrow every sandbox (the unit says why)
    for off in ("User", "DynamicUser", "PrivateUsers", "CapabilityBoundingSet",
                "RestrictNamespaces", "ProtectControlGroups", "ProtectKernelTunables",
                "ProtectKernelLogs", "PrivateDevices", "ProtectClock", "SystemCallFilter",
                "MemoryDenyWriteExecute", "RestrictAddressFamilies", "PrivateNetwork"):
        assert off not in d, off


def test_make_install_puts_the_binary_where_the_unit_runs_it(tmp_path):
    built = os.path.join(ROOT, "build", "sqlfs")
    if not os.path.exists(built):
        pytest.skip("no build/sqlfs")
    # -o: install what is built, without remaking it
    r = subprocess.run(["make", "-s", "-o", "build/sqlfs", "install", f"DESTDIR={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    installed = tmp_path / INSTALLED.lstrip("/")
    assert os.access(installed, os.X_OK)
    assert open(installed, "rb").read() == open(built, "rb").read()
