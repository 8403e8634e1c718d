"""A single-node SLURM cluster on this machine, for tests: Debian's packages, munge, slurmctld and slurmd by hand.

No cgroups (``proctrack/linuxproc``, ``task/none``), no slurmdbd (jobs are followed with ``squeue``, hence a long
``MinJobAge``), a fake GPU (``gres.conf`` with ``File=/dev/null``), state and logs under a temporary folder. The
configuration must live at ``/etc/slurm/slurm.conf`` (the executor plugin strips ``SLURM_*`` variables, so
``SLURM_CONF`` is not enough): files there are backed up and restored. Only the daemons started here are stopped,
by their process ids. Needs root and either the packages or a reachable apt; the fixture skips otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged"]
ETC = Path("/etc/slurm")
PARTITION = "debug"


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def ensure_packages() -> str | None:
    """Install the Debian packages when a binary is missing; returns why it cannot, or None."""
    if all(_which(b) for b in BINARIES):
        return None
    if os.geteuid() != 0:
        return "SLURM is not installed and installing it needs root"
    if not _which("apt-get"):
        return "SLURM is not installed and apt-get is not available"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd, limit in ((["apt-get", "update", "-q"], 180), (["apt-get", "install", "-y", "-q", *PACKAGES], 300)):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd)} took more than {limit} s"
        if proc.returncode != 0:
            return f"{' '.join(cmd)} failed: {proc.stderr[-500:]}"
    missing = [b for b in BINARIES if not _which(b)]
    return f"still missing after apt-get install: {missing}" if missing else None


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class SlurmCluster:
    """The running cluster: its folder, node, partition and the processes this harness started."""

    root: Path
    node: str
    partition: str = PARTITION
    procs: list = field(default_factory=list)
    backups: dict = field(default_factory=dict)

    def run(self, *cmd: str, timeout: float = 20) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout

    def jobs(self) -> list[dict]:
        """Every job slurmctld still remembers, as dicts of ``scontrol show job`` fields."""
        out = self.run("scontrol", "show", "job", "-o")
        jobs = []
        for line in out.splitlines():
            if "JobId=" not in line:
                continue
            jobs.append(dict(kv.split("=", 1) for kv in line.split() if "=" in kv))
        return jobs

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.root.glob("*.log"))


def _write_etc(cluster: SlurmCluster, name: str, text: str) -> None:
    path = ETC / name
    if path.exists() or path.is_symlink():
        backup = cluster.root / f"{name}.orig"
        shutil.copy2(path, backup, follow_symlinks=False)
        cluster.backups[path] = backup
    else:
        cluster.backups[path] = None
    path.write_text(text)


def _restore_etc(cluster: SlurmCluster) -> None:
    for path, backup in cluster.backups.items():
        if backup is None:
            path.unlink(missing_ok=True)
        else:
            shutil.copy2(backup, path, follow_symlinks=False)


def slurm_conf(root: Path, node: str) -> str:
    cpus = max(os.cpu_count() or 1, 8)  # declared, not real (config_overrides): the profile's threads fit
    return f"""\
ClusterName=photoz-test
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
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
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=65536 Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


GRES_CONF = "AutoDetect=off\nName=gpu File=/dev/null\n"


def _start(cluster: SlurmCluster, cmd: list, name: str, **kw) -> None:
    log = open(cluster.root / f"{name}.out", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    cluster.procs.append((name, proc, log))


def _munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
        if cred.returncode != 0:
            return False
        return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_cluster(root: Path) -> SlurmCluster:
    node = socket.gethostname().split(".")[0]
    cluster = SlurmCluster(root=root, node=node)
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ETC.mkdir(parents=True, exist_ok=True)
    try:
        if not _munge_works():  # reuse a munged that already runs, else start one as the munge user
            run_dir = Path("/run/munge")
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(run_dir, "munge", "munge")
            if not Path("/etc/munge/munge.key").exists():
                subprocess.run(["mungekey", "--create"], check=True, timeout=30)
                shutil.chown("/etc/munge/munge.key", "munge", "munge")
            _start(cluster, [_which("munged"), "--foreground"], "munged", user="munge", group="munge")
            _wait(_munge_works, 10, "munged", cluster)
        _write_etc(cluster, "slurm.conf", slurm_conf(root, node))
        _write_etc(cluster, "gres.conf", GRES_CONF)
        _start(cluster, [_which("slurmctld"), "-D", "-i"], "slurmctld")
        _start(cluster, [_which("slurmd"), "-D"], "slurmd")

        def node_ready():
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=5)
            return out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated")

        _wait(node_ready, 30, "the node to become idle", cluster)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _wait(ready, limit: float, what: str, cluster: SlurmCluster) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        for name, proc, _ in cluster.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for {what}:\n{cluster.logs()}")
        if ready():
            return
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}:\n{cluster.logs()}")


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel the jobs left, stop the daemons this harness started (by PID) and restore /etc/slurm."""
    if any(name == "slurmctld" and proc.poll() is None for name, proc, _ in cluster.procs):
        try:
            ids = [j["JobId"] for j in cluster.jobs() if j.get("JobState") in ("PENDING", "RUNNING", "CONFIGURING")]
            if ids:
                subprocess.run(["scancel", *ids], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            pass
    for _name, proc, log in reversed(cluster.procs):  # slurmd, slurmctld, then munged
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()
    cluster.procs.clear()
    _restore_etc(cluster)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster with one (fake) GPU; skipped without root or packages."""
    if os.geteuid() != 0:
        pytest.skip("a test SLURM cluster needs root (daemons, /etc/slurm)")
    why = ensure_packages()
    if why:
        pytest.skip(why)
    for port in (6817, 6818):
        if _port_in_use(port):
            pytest.skip(f"port {port} is in use: a SLURM daemon already runs on this machine")
    root = Path(tmp_path_factory.mktemp("slurm"))
    cluster = start_cluster(root)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
