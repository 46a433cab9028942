"""A real one-node Slurm cluster for tests: munged, slurmctld and slurmd from Debian's
`slurm-wlm` and `munge` packages, configured in a temporary folder (its own munge key and
socket, its own ports), started in the background and stopped at the end.

    cluster = start_cluster(tmp_path)   # a SlurmCluster, or a str: why it cannot start
    cluster.env                         # SLURM_CONF for sbatch/squeue/scancel
    cluster.stop()
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 30.0
NODE_CPUS = 8  # more than this machine may have (config_overrides): jobs of 1 CPU run side by side


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    munge_pid: Path | None = None

    def command(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, env={**os.environ, **self.env})

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            path = self.root / name
            if path.is_file():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)

    def stop(self) -> None:
        try:
            self.command("scancel", "--user", getpass.getuser())
        except (OSError, subprocess.TimeoutExpired):
            pass
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.munge_pid is not None and self.munge_pid.is_file():
            try:
                os.kill(int(self.munge_pid.read_text().strip()), signal.SIGTERM)
            except (ValueError, OSError):
                pass


def _config(root: Path, host: str, user: str) -> str:
    return f"""ClusterName=proctortest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=10
SchedulerParameters=sched_interval=1
NodeName={host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _probe(cluster: SlurmCluster, deadline: float) -> str | None:
    """None when the cluster runs a job (a plain `sbatch --wrap`); else why not."""
    mark = cluster.root / "probe.done"
    submitted = cluster.command("sbatch", "--parsable", f"--output={cluster.root}/probe.out",
                                f"--wrap=touch {mark}")
    if submitted.returncode != 0:
        return f"the one-node Slurm cluster refuses a job: {submitted.stderr.strip()}"
    while time.monotonic() < deadline + 15:
        if mark.is_file():
            return None
        time.sleep(0.2)
    return f"the one-node Slurm cluster runs no job: {cluster.logs().strip().splitlines()[-1:] or 'no log'}"


def start_cluster(root: Path) -> SlurmCluster | str:
    """The running cluster, or why it cannot run here (for a skip)."""
    missing = [c for c in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
               if shutil.which(c) is None]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing): "
                "`apt-get install slurm-wlm munge` (.ci/run does it)")
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    root.chmod(0o755)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munged = subprocess.run(
        ["munged", "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
         f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed"],
        capture_output=True, text=True, timeout=30,
    )
    if munged.returncode != 0:
        return f"cannot start munged: {(munged.stderr or munged.stdout).strip().splitlines()[-1:]}"
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_config(root, host, getpass.getuser()), encoding="utf-8")
    cluster = SlurmCluster(root, {"SLURM_CONF": str(conf)}, munge_pid=root / "munged.pid")
    env = {**os.environ, **cluster.env}
    for daemon in (["slurmctld", "-D", "-i", "-f", str(conf)], ["slurmd", "-D", "-N", host, "-f", str(conf)]):
        cluster.processes.append(subprocess.Popen(daemon, env=env, stdout=subprocess.DEVNULL,
                                                  stderr=(root / f"{daemon[0]}.err").open("wb")))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in cluster.processes):
            break
        state = cluster.command("sinfo", "--noheader", "--format=%T")
        if state.returncode == 0 and state.stdout.strip() in ("idle", "mixed", "allocated"):
            reason = _probe(cluster, deadline)
            if reason is None:
                return cluster
            cluster.stop()
            return reason
        time.sleep(0.3)
    logs = cluster.logs() or "\n".join((root / f"{d}.err").read_text(errors="replace") for d in ("slurmctld", "slurmd"))
    cluster.stop()
    return f"the Slurm daemons did not come up within {START_TIMEOUT_S:.0f}s: {logs.strip().splitlines()[-1:] or 'no log'}"
