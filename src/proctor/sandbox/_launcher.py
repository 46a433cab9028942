"""The sandbox launcher, run as `python -I -S _launcher.py CONFIG_JSON` by proctor.sandbox.runner.

Standard library only and single-threaded, so it can do what a threaded parent cannot do safely
in a preexec_fn (unshare(CLONE_NEWUSER) even refuses threaded callers). The program's source
comes on stdin. Modes (chosen by the parent from a probe, see isolation.py):

"root"   (euid 0): unshare mount+network+pid+ipc+uts namespaces; mounts below; the program runs
         as an unprivileged uid of its own (cfg["uid_base"] + launcher pid), so RLIMIT_NPROC applies to it alone.
"userns" (other users, user namespaces allowed): the same inside a new user namespace.
"none":  rlimits, empty environment, fresh directory (cfg["workdir"]) only.

Mounts (private mount namespace): every mount re-mounted read-only; a fresh size-capped tmpfs
on /tmp holding /tmp/work (the program's cwd and HOME, the only writable place) and /tmp/python
(a read-only bind of the interpreter's prefix, so an unprivileged uid can run it even when it
lives under a private home such as /root).

Then fork: the child is pid 1 of the new pid namespace (when it dies the kernel kills all the
processes left in it), dies with the launcher (PR_SET_PDEATHSIG), gets a /proc of its own when
the kernel allows, no_new_privs and the rlimits, and execs `python -I prog.py`; the launcher
waits and ends the way the child did (same exit code, or killed by the same signal).

Nothing outlives Proctor: the launcher itself dies with the thread that started it
(PR_SET_PDEATHSIG with SIGTERM, whose handler kills everything first; checked against cfg["parent"] for the race before it was set) and watches
cfg["owner"] (the Proctor process that owns the run, e.g. the parent of a scoring worker) through
a pidfd: when the owner dies, or on SIGTERM, it kills the program and everything it started
(as a child subreaper it inherits the program's orphans, so "none" mode catches them too).
cfg["keep_fds"] are pipe ends the program inherits as fds 3 (read) and 4 (write): a split run's
request and answer pipes; the launcher closes its own copies once the child has them, so either
side sees the other's end of file.

Exit 125 with "proctor-sandbox: ..." on stderr: the sandbox could not be set up (no verdict on
the program). With {"probe": true} it tries the modes and prints the first that works as JSON.
"""

import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NS_FLAGS = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
# statvfs f_flag bit -> the mount flag to repeat when re-mounting (the kernel refuses to drop locked ones)
_KEEP = {2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: MS_NOATIME, 2048: MS_NODIRATIME, 4096: MS_RELATIME}
WORK, PYTHON = "/tmp/work", "/tmp/python"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _fail(msg):
    os.write(2, ("proctor-sandbox: %s\n" % msg).encode())
    os._exit(125)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def _mount(src, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)), "mount %s" % target)


def _mountpoints():
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            points.append(line.split()[4].encode().decode("unicode_escape"))  # \040 -> " "
    return points


def _setup_mounts(cfg, owner):
    """Read-only everything; a tmpfs /tmp with work/ (rw) and python/ (ro bind of the prefix).
    Returns the mount points that stayed writable (could not be re-mounted read-only)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the host
    points = _mountpoints()
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,nr_inodes=4096,mode=755" % cfg["tmpfs_bytes"])
    os.mkdir(WORK, 0o700)
    os.mkdir(PYTHON, 0o755)
    if owner is not None:
        os.chown(WORK, owner, owner)
    _mount(cfg["prefix"], PYTHON, None, MS_BIND | MS_REC)
    _mount(None, PYTHON, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    writable = []
    for mp in points:
        if mp == "/tmp" or mp.startswith("/tmp/"):
            continue  # covered by the new tmpfs
        try:
            st = os.statvfs(mp)
        except OSError:
            continue  # unreachable from here: nothing to write to either
        if st.f_flag & 1:
            continue
        keep = 0
        for bit, flag in _KEEP.items():
            if st.f_flag & bit:
                keep |= flag
        try:
            _mount(None, mp, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
        except OSError:
            writable.append(mp)
    return writable


def _modes(euid):
    if euid == 0:
        return [("root", NS_FLAGS), ("userns", NS_FLAGS | CLONE_NEWUSER)]
    return [("userns", NS_FLAGS | CLONE_NEWUSER)]


def _probe(cfg):
    """The first mode whose namespaces and mounts work here (each tried in a throwaway child)."""
    out = {"mode": "none", "flags": 0, "writable_mounts": [], "error": "", "euid": os.geteuid()}
    errors = []
    for mode, flags in _modes(os.geteuid()):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            res = {"ok": False, "writable": [], "error": ""}
            try:
                _check(_libc.unshare(flags), "unshare")
                res["writable"] = _setup_mounts(cfg, None)
                res["ok"] = True
            except OSError as e:
                res["error"] = str(e)
            os.write(w, json.dumps(res).encode())
            os._exit(0)
        os.close(w)
        data = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(r)
        os.waitpid(pid, 0)
        try:
            res = json.loads(data.decode() or "{}")
        except ValueError:
            res = {}
        if res.get("ok"):
            out.update(mode=mode, flags=flags, writable_mounts=res["writable"])
            break
        errors.append("%s: %s" % (mode, res.get("error") or "probe child died"))
    out["error"] = "; ".join(errors) if out["mode"] == "none" else ""
    sys.stdout.write(json.dumps(out))
    sys.stdout.flush()


def _set_limits(limits):
    for name, value in limits.items():
        res = getattr(resource, name)
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):  # above the current hard limit: lower the soft one only
            hard = resource.getrlimit(res)[1]
            resource.setrlimit(res, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))


def _read_stdin():
    chunks = []
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _children(pid):
    """The pids whose parent is `pid` (from /proc)."""
    kids = []
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        pass
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == pid:
                kids.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return kids


def _kill_all(child):
    """SIGKILL the program and every process it left (orphans come to us: we are a subreaper)."""
    me = os.getpid()
    for _ in range(1000):
        kids = _children(me) if child is None else [child]
        child = None
        if not kids:
            return
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except OSError:
                pass
        for kid in kids:
            try:
                os.waitpid(kid, 0)
            except OSError:
                pass


def _guard(cfg):
    """Die with the thread that started us, and note the run's owner (a pidfd, None if unsupported).
    SIGTERM, not SIGKILL: its handler kills the program's orphans first (see main)."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl(PDEATHSIG)")
    if cfg.get("parent") and os.getppid() != int(cfg["parent"]):
        os._exit(125)  # the parent died before PDEATHSIG was set
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    owner = int(cfg.get("owner") or 0)
    if not owner or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(owner)
    except ProcessLookupError:
        _fail("the Proctor process that owns this run is gone")
    except OSError:
        return None  # an old kernel: PDEATHSIG alone


def _wait(pid, owner_fd):
    """The child's wait status; kills everything and exits at once if the owner dies first."""
    child_fd = None
    if owner_fd is not None:
        try:
            child_fd = os.pidfd_open(pid)
        except OSError:
            child_fd = None
    if child_fd is not None:
        poller = select.poll()
        poller.register(child_fd, select.POLLIN)
        poller.register(owner_fd, select.POLLIN)
        while True:
            ready = [fd for fd, _ in poller.poll()]
            if owner_fd in ready:
                _kill_all(pid)
                _kill_all(None)
                os.kill(os.getpid(), signal.SIGKILL)
            if child_fd in ready:
                break
    _, status = os.waitpid(pid, 0)
    return status


def main():
    cfg = json.loads(sys.argv[1])
    if cfg.get("probe"):
        _probe(cfg)
        return
    owner_fd = _guard(cfg)
    source = _read_stdin()
    mode, flags = cfg["mode"], int(cfg["flags"])
    uid = int(cfg["uid_base"]) + os.getpid() if mode == "root" else None  # unique among running sandboxes
    python, env = cfg["python"], dict(cfg["env"])
    cgroup_fd = None
    try:
        if cfg.get("cgroup"):  # opened before the mounts turn read-only; the child writes to it
            cgroup_fd = os.open(cfg["cgroup"], os.O_WRONLY)
        if mode == "none":
            work = cfg["workdir"]
        else:
            _check(_libc.unshare(flags), "unshare")
            _setup_mounts(cfg, uid if mode == "root" else None)
            work = WORK
            python = PYTHON + "/" + cfg["python_rel"]
            env["LD_LIBRARY_PATH"] = PYTHON + "/lib"  # an absolute RUNPATH under a private home
        env.setdefault("HOME", work)
        env.setdefault("TMPDIR", work)
        fd = os.open(os.path.join(work, "prog.py"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, source)
        os.close(fd)
        if mode == "root":
            os.chown(os.path.join(work, "prog.py"), uid, uid)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    except OSError as e:
        _fail("setup failed: %s" % e)
    launcher = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            if flags & CLONE_NEWPID:
                try:  # a /proc of the new pid namespace, so the host's processes are not listed
                    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
                except OSError as e:
                    # e.g. a container's masked /proc: the host's /proc stays. As root the program
                    # runs as its own uid and cannot open the tester through it; in userns mode both
                    # run as one user and it could read the tester's nonce and write its verdict.
                    if mode == "userns":
                        _fail("cannot mount /proc in the sandbox (%s): the program could reach the tester "
                              "and forge its verdict; run as root, or set PROCTOR_SANDBOX=none (verdicts "
                              "then not guaranteed)" % e)
            if cgroup_fd is not None:  # its own memory cgroup (made by the runner), joined while still root
                os.write(cgroup_fd, b"0")
                os.close(cgroup_fd)
            if mode == "root":
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)  # drops every capability
            _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
            if not (flags & CLONE_NEWPID) and os.getppid() != launcher:
                os._exit(125)  # the launcher is already gone
            _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
            keep = [int(fd) for fd in cfg.get("keep_fds") or ()]
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in keep]
            for i, fd in enumerate(high):  # the program's pipes on fixed fds: 3 reads, 4 writes
                os.dup2(fd, 3 + i)
            for fd in set(keep + high) - {3 + i for i in range(len(high))}:
                os.close(fd)
            _set_limits(cfg["limits"])
            os.chdir(work)
            os.execve(python, [python, "-I", "prog.py"], env)
        except OSError as e:
            _fail("setup failed in the child: %s" % e)
    for fd in cfg.get("keep_fds") or ():
        os.close(int(fd))  # the child has them; our copies would hide the other side's end of file

    def stop(signum, frame):
        _kill_all(pid)
        _kill_all(None)
        os.kill(os.getpid(), signal.SIGKILL)  # ends as killed, as the program was

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    status = _wait(pid, owner_fd)
    _kill_all(None)  # what the program left behind (its orphans are ours)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be caught: no handler to reset
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


if __name__ == "__main__":
    main()
