"""The code sandbox (proctor.sandbox): limits, isolation, containment of hostile programs.

Nothing here runs a destructive command against a real path: the only `rm -rf` targets are
the sandbox's own HOME and a canary directory under the test's tmp_path, and they run only
where the probe says the filesystem is read-only in the sandbox.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from proctor.sandbox import Limits, isolation, run_many, run_program
from proctor.sandbox.isolation import NONE

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox needs Linux")

FAST = Limits(timeout_s=3.0)


def iso_or_skip(attr: str) -> None:
    iso = isolation()
    if not getattr(iso, attr):
        pytest.skip(f"the sandbox has no {attr} here ({iso.mode}: {iso.reason})")


def test_runs_a_program_with_an_empty_environment_in_a_fresh_directory() -> None:
    r = run_program("import os, sys\nprint(sorted(os.environ))\nprint(os.listdir('.'))\nprint(sys.flags.isolated)")
    assert r.returncode == 0, r.stderr
    env, listing, isolated = r.stdout.splitlines()
    assert set(eval(env)) <= {"HOME", "TMPDIR", "LANG", "LC_ALL", "LD_LIBRARY_PATH"}
    assert listing == "['prog.py']"
    assert isolated == "1"


def test_exit_codes_and_stderr_come_back() -> None:
    r = run_program("import sys\nprint('out')\nsys.stderr.write('err\\n')\nsys.exit(3)")
    assert (r.returncode, r.stdout, r.stderr, r.timed_out) == (3, "out\n", "err\n", False)


def test_infinite_loop_times_out_and_is_killed() -> None:
    t = time.monotonic()
    r = run_program("while True:\n    pass", Limits(timeout_s=1.5))
    assert r.timed_out and r.returncode is not None and r.returncode < 0
    assert time.monotonic() - t < 10


def test_sleeping_child_processes_do_not_outlive_the_timeout() -> None:
    # A daemonised grandchild (new session) must die with the program too (pid namespace).
    iso_or_skip("pid_namespace")
    src = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\ntime.sleep(60)"
    r = run_program(src, Limits(timeout_s=1.0))
    assert r.timed_out


def test_huge_allocation_fails_inside() -> None:
    r = run_program("x = bytearray(10 * 1024**3)\nprint('allocated')", FAST)
    assert r.returncode == 1 and "MemoryError" in r.stderr and "allocated" not in r.stdout


def test_printing_gigabytes_is_cut_and_killed() -> None:
    limits = Limits(timeout_s=10.0, output_bytes=1 << 16)
    r = run_program("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits)
    assert r.output_overflow and len(r.stdout) <= limits.output_bytes


def test_fork_bomb_is_contained() -> None:
    iso = isolation()
    if not iso.nproc_enforced:
        pytest.skip(f"RLIMIT_NPROC does not apply here ({iso.mode})")
    src = "import os\nn = 0\nwhile True:\n    try:\n        os.fork(); n += 1\n    except OSError:\n        break\nprint('forks', n)"
    r = run_program(src, Limits(timeout_s=5.0, processes=16))
    forks = [int(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("forks")]
    assert forks and max(forks) < 16
    assert run_program("print('still fine')", FAST).stdout == "still fine\n"


def test_no_network(tmp_path: Path) -> None:
    iso_or_skip("network")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        src = f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('connected')\nexcept OSError as e:\n    print('refused', e)"
        r = run_program(src, FAST)
        assert "refused" in r.stdout and "connected" not in r.stdout
        with pytest.raises(socket.timeout):
            server.accept()


@pytest.mark.parametrize("where", ["tmp_path", "var_tmp"])
def test_cannot_write_outside_its_directory(where: str, tmp_path: Path) -> None:
    # Under /tmp (tmp_path) the path is hidden by the sandbox's own /tmp; elsewhere the
    # filesystem is read-only (or, as root, not writable by the sandbox's uid).
    iso_or_skip("filesystem_readonly")
    base = tmp_path if where == "tmp_path" else Path(tempfile.mkdtemp(dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None))
    try:
        base.chmod(0o777)
        target = base / "outside.txt"
        r = run_program(f"open({str(target)!r}, 'w').write('pwned')", FAST)
        assert r.returncode == 1 and not target.exists()
        assert any(e in r.stderr for e in ("Read-only", "Permission denied", "No such file"))
    finally:
        if where != "tmp_path":
            shutil.rmtree(base, ignore_errors=True)


def test_rm_rf_home_and_outside_leave_the_canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    iso_or_skip("filesystem_readonly")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    canary = tmp_path / "keep" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text("alive")
    # First make sure `~` is the sandbox's own directory here, then let it do its worst.
    probe = run_program("import os\nos.system('echo ~ > where')\nprint(open('where').read().strip(), os.getcwd())", FAST)
    home, cwd = probe.stdout.split()
    assert home == cwd and not home.startswith(str(tmp_path))
    src = f"import os\nos.system('rm -rf ~')\nos.system('rm -rf {canary.parent}')\nprint('done')"
    r = run_program(src, FAST)
    assert canary.read_text() == "alive"


def test_no_view_of_other_processes() -> None:
    iso_or_skip("pid_namespace")
    r = run_program("import os\nprint(os.getpid())\nprint(os.kill(1, 0))", FAST)
    assert r.stdout.splitlines()[0] == "1"


def test_closing_stdout_does_not_hang_the_runner() -> None:
    r = run_program("import os\nos.close(1)\nos.close(2)\nimport time\ntime.sleep(0.2)", FAST)
    assert r.returncode in (0, 1, 120) and not r.timed_out


def test_runs_in_parallel_in_order() -> None:
    results = run_many([f"print({i})" for i in range(6)], FAST, workers=2)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]


def test_fallback_mode_without_namespaces() -> None:
    r = run_program("import os\nprint(os.getcwd() != '/', 'PATH' in os.environ)", FAST, iso=NONE)
    assert r.returncode == 0 and r.stdout == "True False\n"
    assert run_program("while True: pass", Limits(timeout_s=1.0), iso=NONE).timed_out


def test_isolation_is_recordable() -> None:
    data = isolation().as_manifest()
    assert data["mode"] in ("root", "userns", "none") and "network" in data


def test_a_sandbox_that_cannot_be_set_up_is_one_line_saying_what_to_do() -> None:
    # It was a RuntimeError: `proctor run` ended with a traceback in the scoring stage.
    iso = isolation()
    if iso.mode == "none":
        pytest.skip("no namespaces here")
    from dataclasses import replace

    from proctor.errors import ProctorError
    from proctor.sandbox import SandboxError

    with pytest.raises(ProctorError) as caught:
        run_program("print(1)", Limits(timeout_s=5), replace(iso, flags=1))  # unshare() refuses flag bit 0
    assert isinstance(caught.value, SandboxError)
    assert "could not be set up" in str(caught.value) and "PROCTOR_SANDBOX=none" in str(caught.value)
