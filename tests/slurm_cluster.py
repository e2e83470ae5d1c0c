"""A real one-machine SLURM cluster for the tests: munge, MariaDB, slurmdbd (so `sacct` works), slurmctld, slurmd.

Debian's packages are installed with apt-get when absent (root only). The node is virtual in its SHAPE: it
declares the CPUs, memory and GPUs of the paper's 8-GPU node (`SlurmdParameters=config_overrides`, GPUs as a
generic resource without device files), so the real profile's requests (`--gpus=8 --cpus-per-gpu=8 --mem ...`)
are scheduled by a real slurmctld exactly as on a cluster, while the jobs themselves run on this machine's CPUs.

Idempotent: a daemon that already answers is reused and left running; `stop()` ends only the daemons this
object started (by their process id) and removes the configuration files it wrote.

Use from a shell (as root):  python tests/slurm_cluster.py start | status   (start leaves the daemons running)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ["slurm-wlm", "munge", "slurmdbd", "mariadb-server"]
# Programs the cluster needs, and the package that provides each.
PROGRAMS = {"slurmctld": "slurm-wlm", "slurmd": "slurm-wlm", "sbatch": "slurm-wlm", "sacct": "slurm-wlm",
            "munged": "munge", "slurmdbd": "slurmdbd", "mariadbd": "mariadb-server", "mariadb": "mariadb-server"}
MARKER = "# written by refine-iqa tests/slurm_cluster.py"
SLURM_ETC = Path("/etc/slurm")
MYSQL_SOCKET = Path("/run/mysqld/mysqld.sock")


class ClusterError(RuntimeError):
    """The cluster could not be installed or started; the message says which step and shows its log."""


def _run(cmd: list[str], *, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise ClusterError(f"`{' '.join(cmd)}` failed (exit {res.returncode}):\n{res.stdout}{res.stderr}")
    return res


def _ok(cmd: list[str], timeout: float = 10) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


def why_unavailable() -> str | None:
    """None when this machine can run the cluster (root, Debian's apt-get); otherwise the reason."""
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root (it installs packages and starts system daemons)"
    if missing_programs() and shutil.which("apt-get") is None:
        return f"SLURM is not installed ({', '.join(missing_programs())} missing) and there is no apt-get"
    return None


def ensure_installed() -> float:
    """Install Debian's SLURM, munge, slurmdbd and MariaDB when any program is missing; returns seconds spent."""
    if not missing_programs():
        return 0.0
    t0 = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], timeout=600, env=env)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], timeout=900, env=env)
    if missing_programs():
        raise ClusterError(f"apt-get installed {PACKAGES} but {missing_programs()} are still missing")
    return time.monotonic() - t0


@dataclass
class SlurmCluster:
    """One node `hostname` in partition `partition`, accounting through slurmdbd + MariaDB."""

    cluster_name: str = "refineiqa"
    partition: str = "debug"
    account: str = "refineiqa"
    cpus: int = 64                 # the paper node's shape, scheduled virtually (see module docstring)
    gpus: int = 8
    memory_mb: int = 1_024_000
    features: str = "a100"         # node features (sbatch -C) the profile's GPU rules ask for
    state_dir: Path = Path("/var/lib/refine-iqa-slurm")
    db_password: str = "refine-iqa-slurmdbd"
    started: list = field(default_factory=list)       # [(name, Popen)] this object started, in order
    written: list = field(default_factory=list)       # config files this object created
    install_seconds: float = 0.0                       # apt-get time of the last start() (0 when installed)
    start_seconds: float = 0.0                         # the rest of start(): daemons up, node idle

    @property
    def node(self) -> str:
        return socket.gethostname().split(".")[0]

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self, timeout: float = 90) -> "SlurmCluster":
        reason = why_unavailable()
        if reason:
            raise ClusterError(reason)
        self.install_seconds = ensure_installed()
        t0 = time.monotonic()
        for d in (self.state_dir, self.log_dir, self.state_dir / "ctld", self.state_dir / "slurmd"):
            d.mkdir(parents=True, exist_ok=True)
        try:
            self._start_munge()
            self._start_mariadb()
            self._write_configs()
            self._start_slurmdbd()
            self._register_accounts()
            self._start_slurm_daemons()
            self.wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """End the daemons this object started (newest first), then remove the config files it wrote."""
        for name, proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.started.clear()
        for path in self.written:
            Path(path).unlink(missing_ok=True)
        self.written.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- queries ------------------------------------------------------------------------------------------

    def node_state(self) -> str:
        res = subprocess.run(["sinfo", "-h", "-N", "-n", self.node, "-o", "%T"], capture_output=True, text=True,
                             timeout=10)
        return res.stdout.strip() if res.returncode == 0 else ""

    def wait_idle(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state.startswith(("idle", "mixed", "allocated")):
                return
            if state.startswith(("inval", "drain")):
                break  # a configuration the controller rejected: waiting does not help
            time.sleep(0.5)
        reason = _run(["sinfo", "-h", "-N", "-n", self.node, "-o", "%E"], check=False).stdout.strip()
        raise ClusterError(f"node {self.node} is not idle (state {state!r}, reason {reason!r}).\n"
                           f"slurmctld log:\n{_tail(self.log_dir / 'slurmctld.log')}\n"
                           f"slurmd log:\n{_tail(self.log_dir / 'slurmd.log')}")

    # --- steps ----------------------------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], **kw) -> subprocess.Popen:
        out = open(self.log_dir / f"{name}.out", "ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
        out.close()
        self.started.append((name, proc))
        return proc

    def _wait_for(self, name: str, probe, timeout: float, log: Path) -> None:
        proc = dict(self.started).get(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.3)
        raise ClusterError(f"{name} did not start (exit {proc.poll() if proc else None}); its log {log}:\n"
                           f"{_tail(log)}\n{_tail(self.log_dir / f'{name}.out')}")

    def _start_munge(self) -> None:
        if _ok(["munge", "-n"]):
            return
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(os.urandom(1024))
        for d in (key.parent, Path("/run/munge"), Path("/var/lib/munge"), Path("/var/log/munge")):
            d.mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        self._spawn("munged", ["munged", "-F"], user="munge", group="munge")
        self._wait_for("munged", lambda: _ok(["munge", "-n"]), 20, Path("/var/log/munge/munged.log"))

    def _mysql(self, sql: str) -> None:
        _run(["mariadb", "-u", "root", "-e", sql])

    def _start_mariadb(self) -> None:
        ping = ["mariadb", "-u", "root", "-e", "SELECT 1"]
        if not _ok(ping):
            run_dir = MYSQL_SOCKET.parent
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(run_dir, "mysql", "mysql")
            if not Path("/var/lib/mysql/mysql").is_dir():
                _run(["mariadb-install-db", "--user=mysql", "--datadir=/var/lib/mysql"], timeout=120)
            # Unix socket only: nothing listens on the network.
            self._spawn("mariadbd", ["mariadbd", "--user=mysql", "--skip-networking", f"--socket={MYSQL_SOCKET}",
                                     f"--pid-file={run_dir / 'mariadbd.pid'}"])  # log: stderr -> mariadbd.out
            self._wait_for("mariadbd", lambda: _ok(ping), 60, self.log_dir / "mariadbd.out")
        self._mysql("CREATE DATABASE IF NOT EXISTS slurm_acct_db; "
                    f"CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '{self.db_password}'; "
                    f"ALTER USER 'slurm'@'localhost' IDENTIFIED BY '{self.db_password}'; "
                    "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;")

    def _write(self, path: Path, text: str, mode: int = 0o644) -> None:
        """Write a config file; never overwrite one this module did not write (a real cluster's)."""
        if path.exists():
            if MARKER not in path.read_text(errors="replace"):
                raise ClusterError(f"{path} exists and was not written by tests/slurm_cluster.py; this machine "
                                   "has its own SLURM configuration: run the test on a machine without one")
            if path.read_text() == text:
                return
        elif str(path) not in self.written:
            self.written.append(str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(mode)
        tmp.replace(path)

    def slurm_conf(self) -> str:
        s, log = self.state_dir, self.log_dir
        return f"""{MARKER}
ClusterName={self.cluster_name}
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
# the node declares the paper node's shape; slurmd accepts it on this smaller machine
SlurmdParameters=config_overrides
StateSaveLocation={s / 'ctld'}
SlurmdSpoolDir={s / 'slurmd'}
SlurmctldPidFile={s / 'slurmctld.pid'}
SlurmdPidFile={s / 'slurmd.pid'}
SlurmctldLogFile={log / 'slurmctld.log'}
SlurmdLogFile={log / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
# jobs are recorded in slurmdbd, with the comment Snakemake gives each job (rule and wildcards)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
# a cancelled job gets SIGTERM, then SIGKILL after KillWait seconds
KillWait=5
InactiveLimit=0
MinJobAge=300
SchedulerType=sched/backfill
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket={self.cpus} ThreadsPerCore=1 RealMemory={self.memory_mb} Gres=gpu:{self.gpus} Features={self.features} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""

    def _write_configs(self) -> None:
        self._write(SLURM_ETC / "slurm.conf", self.slurm_conf())
        # Slurm counts GPUs by their device files: empty stand-ins, scheduled and counted, never opened.
        dev = self.state_dir / "dev"
        dev.mkdir(parents=True, exist_ok=True)
        for i in range(self.gpus):
            (dev / f"nvidia{i}").touch()
        self._write(SLURM_ETC / "gres.conf", f"{MARKER}\nAutoDetect=off\n"
                    f"NodeName={self.node} Name=gpu File={dev}/nvidia[0-{self.gpus - 1}]\n")
        self._write(SLURM_ETC / "slurmdbd.conf", f"""{MARKER}
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile={self.state_dir / 'slurmdbd.pid'}
LogFile={self.log_dir / 'slurmdbd.log'}
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass={self.db_password}
StorageLoc=slurm_acct_db
""", mode=0o600)

    def _start_slurmdbd(self) -> None:
        probe = ["sacctmgr", "-n", "list", "cluster"]
        if _ok(probe):
            return
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        self._wait_for("slurmdbd", lambda: _ok(probe), 60, self.log_dir / "slurmdbd.log")

    def _register_accounts(self) -> None:
        def listed(kind: str, *extra: str) -> str:
            return _run(["sacctmgr", "-n", "-P", "list", kind, *extra]).stdout

        if self.cluster_name not in listed("cluster", "format=cluster").split():
            _run(["sacctmgr", "-i", "add", "cluster", self.cluster_name])
        if self.account not in listed("account", "format=account").split():
            _run(["sacctmgr", "-i", "add", "account", self.account, f"cluster={self.cluster_name}",
                  "description=refine-iqa tests", "organization=refine-iqa"])
        if self.account not in listed("user", "root", "withassoc", "format=account").split():
            _run(["sacctmgr", "-i", "add", "user", "root", f"account={self.account}", f"cluster={self.cluster_name}"])

    def _start_slurm_daemons(self) -> None:
        if not _ok(["scontrol", "ping"]) or "UP" not in _run(["scontrol", "ping"], check=False).stdout:
            self._spawn("slurmctld", ["slurmctld", "-D"])
            self._wait_for("slurmctld", lambda: "UP" in _run(["scontrol", "ping"], check=False).stdout, 60,
                           self.log_dir / "slurmctld.log")
        if not _ok(["scontrol", "show", "slurmd"]):  # asks the local slurmd
            self._spawn("slurmd", ["slurmd", "-D"])
        self._resume_if_drained()

    def _resume_if_drained(self, timeout: float = 20) -> None:
        """A node drained in an earlier session (saved controller state) stays drained until resumed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.node_state()
            if state.startswith(("drain", "inval")) or "drain" in state:
                _run(["scontrol", "update", f"NodeName={self.node}", "State=RESUME"], check=False)
                return
            if state.startswith(("idle", "mixed", "allocated")):
                return
            time.sleep(0.5)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    cluster = SlurmCluster()
    if cmd == "start":
        cluster.start()
        cluster.started.clear()  # leave the daemons running after this command
        cluster.written.clear()
        print(f"cluster {cluster.cluster_name}: node {cluster.node} {cluster.node_state()}")
    elif cmd == "status":
        print(_run(["sinfo"], check=False).stdout or "no cluster answers")
    else:
        print("usage: python tests/slurm_cluster.py start|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
