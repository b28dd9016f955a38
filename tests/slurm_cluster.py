"""A real single-node SLURM cluster for tests (SLURM 22.05 from Debian packages).

What it does (each step was needed on Debian 12 / SLURM 22.05 in a container):

* makes sure ``slurmctld slurmd slurm-client munge`` are installed, installing
  them with apt-get only when allowed (``CI=true`` or ``CONVERGENT_INSTALL_SLURM=1``);
* writes a munge key (if none exists), ``/etc/slurm/slurm.conf`` and
  ``/etc/slurm/gres.conf`` (fake GPUs made with ``mknod``). ``SLURM_CONF`` must
  not be used: the executor plugin's job-step helper strips ``SLURM_*``
  variables before its nested ``srun``. State, spool, pid and log files live in
  a temporary directory;
* starts ``munged`` (unless a working one is already running), ``slurmctld``
  and ``slurmd`` by hand, waits until ``sinfo`` shows the node idle;
* on exit cancels the jobs, then stops exactly the daemons it started (pid
  files + ``/proc/<pid>/stat`` start time), and removes the config files it
  wrote. Pids are also recorded in ``/run/convergent-test-slurm.json`` so a run
  that was SIGKILLed is cleaned up by the next one.

Use from Python::

    with slurm_cluster(tmpdir) as info:
        proc = run_snakemake_on_slurm(workdir, snakefile, configfile, ["--forceall"])

Use from pytest: add to ``tests/conftest.py``::

    from tests.slurm_cluster import slurm_cluster_info  # noqa: F401  (session fixture)

and request the ``slurm_cluster_info`` fixture (it skips, or fails under
``CI=true``, when a cluster cannot be had).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "profiles"
TOY_WORKFLOW_DIR = Path(__file__).resolve().parent / "data" / "toy_workflow"

APT_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
# binary -> Debian package providing it
REQUIRED_BINARIES = {
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sinfo": "slurm-client",
    "squeue": "slurm-client",
    "sbatch": "slurm-client",
    "srun": "slurm-client",
    "scontrol": "slurm-client",
    "scancel": "slurm-client",
    "munged": "munge",
    "munge": "munge",
    "unmunge": "munge",
}
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

MARKER = "# Written by convergent tests/slurm_cluster.py for a throw-away test cluster; safe to delete."
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN_DIR = Path("/run/munge")
REGISTRY = Path("/run/convergent-test-slurm.json")
PARTITION = "debug"
CTLD_PORT, SLURMD_PORT = 6817, 6818

# Keys the *test* cluster needs on top of profiles/slurm/config.yaml. They are
# facts about this throw-away cluster (no accounting database, no accounts,
# tiny node), not about a user's cluster, so they never go into the user profile.
LOCAL_CLUSTER_PROFILE_KEYS = {
    # No slurmdbd => no sacct; squeue sees finished jobs for MinJobAge seconds.
    "slurm-status-command": "squeue",
    # No accounts exist on the test cluster.
    "slurm-no-account": True,
    # First status check after 5 s (default 40 s); must stay < MinJobAge / 3.
    # The plugin adds 10 s to the interval after every check that finds no job
    # finished, so a first check that comes too early costs 10 s per stage:
    # 5 s is just above how long a trivial job takes here (two snakemake starts).
    "slurm-init-seconds-before-status-checks": 5,
    # Keep the per-job logs as evidence that jobs went through SLURM.
    "slurm-keep-successful-logs": True,
    "latency-wait": 5,
    "jobs": 20,
    "max-jobs-per-timespan": "50/1s",
    # "cores" is set to the node's CPUs in make_test_profile(): without it a
    # group job asks for more CPUs than the node has and stays pending forever.
}


class SlurmUnavailable(RuntimeError):
    """A cluster cannot be had here (missing packages and install not allowed, not root, ...)."""


class SlurmStartupError(RuntimeError):
    """Something went wrong while starting the cluster; the message includes daemon log tails."""


def _log(msg: str) -> None:
    print(f"[slurm_cluster] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# installation
# --------------------------------------------------------------------------- #
def which(name: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN_DIRS)
    return shutil.which(name, path=path)


def missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if which(b) is None]


def install_allowed(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("CI") == "true" or env.get("CONVERGENT_INSTALL_SLURM") == "1"


def is_ci(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("CI") == "true"


def install_packages(timeout: float = 1200) -> None:
    """apt-get install the SLURM/munge packages without letting them start services."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("installing SLURM needs root (apt-get)")
    if which("apt-get") is None:
        raise SlurmUnavailable("apt-get not found: install slurmctld slurmd slurm-client munge by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Keep apt from starting slurmctld/slurmd/munge as services (on systemd
    # hosts they would grab the ports or fail noisily): this module starts the
    # daemons itself. Docker images usually ship such a policy-rc.d already.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\n# temporary, convergent tests/slurm_cluster.py\nexit 101\n")
        policy.chmod(0o755)
        created_policy = True
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES]
    try:
        t0 = time.monotonic()
        _log("installing " + " ".join(APT_PACKAGES) + " with apt-get")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            # Fresh containers have empty package lists: update once and retry.
            _log("apt-get install failed; running apt-get update and retrying")
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=timeout)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise SlurmStartupError(
                f"`{' '.join(cmd)}` failed (rc={proc.returncode}):\n{_tail_text(proc.stdout)}\n{_tail_text(proc.stderr)}"
            )
        _log(f"installed in {time.monotonic() - t0:.1f}s")
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)
    still = missing_binaries()
    if still:
        raise SlurmStartupError(f"after apt-get install these binaries are still missing: {still}")


def ensure_slurm_available(allow_install: bool | None = None) -> None:
    """Raise SlurmUnavailable (with the reason) unless a cluster can be started here."""
    if not sys.platform.startswith("linux"):
        raise SlurmUnavailable(f"a test SLURM cluster needs Linux, not {sys.platform}")
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            "starting a test SLURM cluster needs root (it writes /etc/slurm/slurm.conf and /etc/munge/munge.key)"
        )
    if allow_install is None:
        allow_install = install_allowed()
    missing = missing_binaries()
    if missing:
        if not allow_install:
            pkgs = sorted({REQUIRED_BINARIES[b] for b in missing})
            raise SlurmUnavailable(
                f"SLURM/munge binaries missing ({', '.join(missing)}); install them with "
                f"`apt-get install -y --no-install-recommends {' '.join(APT_PACKAGES)}` "
                f"(missing packages: {' '.join(pkgs)}), or set CONVERGENT_INSTALL_SLURM=1 "
                "(or CI=true) to let the test install them"
            )
        install_packages()
    for path in (SLURM_CONF, GRES_CONF):
        if path.exists() and MARKER not in path.read_text(errors="replace"):
            raise SlurmUnavailable(
                f"{path} exists and was not written by this test helper: refusing to overwrite a real SLURM setup"
            )


# --------------------------------------------------------------------------- #
# small process helpers
# --------------------------------------------------------------------------- #
def _tail_text(text: str | None, n: int = 40) -> str:
    if not text:
        return ""
    return "\n".join(text.splitlines()[-n:])


def tail(path: Path | str, n: int = 40) -> str:
    try:
        return _tail_text(Path(path).read_text(errors="replace"), n)
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _proc_identity(pid: int) -> tuple[str, int] | None:
    """(comm, start time in clock ticks) of a live process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # zombie: as good as gone
        return None
    return comm, int(fields[19])


def _alive(pid: int, starttime: int) -> bool:
    ident = _proc_identity(pid)
    return ident is not None and ident[1] == starttime


def _exists(pid: int, starttime: int) -> bool:
    """True while /proc still lists this process, zombies included."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(text[text.rindex(")") + 2 :].split()[19]) == starttime


def _stop_pid(name: str, pid: int, starttime: int, timeout: float = 15.0) -> None:
    """SIGTERM, wait, SIGKILL exactly this process (same pid *and* start time)."""
    if _alive(pid, starttime):
        _log(f"stopping {name} (pid {pid})")
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if _wait_for(lambda: not _alive(pid, starttime), wait, 0.1):
                break
        if _alive(pid, starttime):
            _log(f"WARNING: {name} (pid {pid}) survived SIGKILL")
            return
    # Daemons are reparented to init; give it a moment to reap the zombie so
    # that `pgrep` right after the tests shows nothing (some container inits
    # reap only every second or so).
    _wait_for(lambda: not _exists(pid, starttime), 5.0, 0.1)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _daemon_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SLURMD_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SINFO_"))}
    env["PATH"] = os.pathsep.join([env.get("PATH", "/usr/bin:/bin"), *SBIN_DIRS])
    return env


def _run(cmd: Sequence[str], timeout: float = 30, check: bool = False, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, check=check, env=kw.pop("env", _daemon_env()), **kw
    )


def _wait_for(pred, timeout: float, interval: float = 0.25):
    """Poll pred() until it returns a truthy value; return it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            val = pred()
        except (OSError, subprocess.SubprocessError, ValueError):
            val = None
        if val:
            return val
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def _read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- #
# registry of daemons we started (survives a SIGKILLed test run)
# --------------------------------------------------------------------------- #
def _registry_load() -> list[dict]:
    try:
        return json.loads(REGISTRY.read_text())
    except (OSError, ValueError):
        return []


def _registry_save(entries: list[dict]) -> None:
    try:
        if entries:
            REGISTRY.write_text(json.dumps(entries))
        else:
            REGISTRY.unlink(missing_ok=True)
    except OSError as exc:  # best effort: only needed to clean up after a SIGKILL
        _log(f"cannot update {REGISTRY}: {exc}")


def cleanup_stale() -> None:
    """Stop daemons an earlier (killed) run of this helper left behind, and nothing else."""
    entries = _registry_load()
    for e in reversed(entries):
        ident = _proc_identity(e["pid"])
        if ident is not None and ident[1] == e["starttime"] and ident[0] == e["comm"]:
            _log(f"found {e['name']} (pid {e['pid']}) left by an earlier run; stopping it")
            _stop_pid(e["name"], e["pid"], e["starttime"])
    _registry_save([])


# --------------------------------------------------------------------------- #
# the cluster
# --------------------------------------------------------------------------- #
@dataclasses.dataclass
class ClusterInfo:
    root: Path  # temporary directory holding state, spool, logs, pid files, fake devices
    hostname: str  # node name == short hostname
    cpus: int  # CPUs of the (only) node
    mem_mb: int  # RealMemory of the node
    gpus: int  # number of fake GPUs (gres gpu:fake:N); 0 if mknod failed
    partition: str
    slurm_conf: Path
    log_dir: Path
    startup_seconds: float = 0.0
    min_job_age: int = 600
    started: list[dict] = dataclasses.field(default_factory=list)  # daemons we started
    preexisting_stepds: set[int] = dataclasses.field(default_factory=set)
    munged_log: Path = Path("/var/log/munge/munged.log")
    extra_dirs: list[Path] = dataclasses.field(default_factory=list)  # removed on stop

    @property
    def slurmctld_log(self) -> Path:
        return self.log_dir / "slurmctld.log"

    @property
    def slurmd_log(self) -> Path:
        return self.log_dir / "slurmd.log"

    def diagnostics(self, n: int = 30) -> str:
        parts = []
        for cmd in (["sinfo", "-N", "-l"], ["squeue", "-t", "all", "-o", "%i %j %T %r %C %m %b"]):
            try:
                p = _run(cmd, timeout=15)
                parts.append(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}")
            except (OSError, subprocess.SubprocessError) as exc:
                parts.append(f"$ {' '.join(cmd)}\n<failed: {exc}>")
        for log in (self.slurmctld_log, self.slurmd_log, self.munged_log):
            if log.exists():
                parts.append(f"--- tail of {log} ---\n{tail(log, n)}")
        return "\n".join(parts)


def _node_resources() -> tuple[int, int]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    # leave some room for the OS; memory is not enforced (no cgroups) anyway
    mem_mb = max(512, int(mem_kib / 1024 * 0.9))
    return cpus, mem_mb


def _write_conf(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _slurm_conf_text(info: ClusterInfo, state: Path, spool: Path, run: Path) -> str:
    gres_node = f" Gres=gpu:fake:{info.gpus}" if info.gpus else ""
    return f"""{MARKER}
# Single-node test cluster; state lives in {info.root}
ClusterName=convergenttest
SlurmctldHost={info.hostname}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={run}/slurmctld.pid
SlurmdPidFile={run}/slurmd.pid
SlurmctldLogFile={info.slurmctld_log}
SlurmdLogFile={info.slurmd_log}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# squeue (no sacct here) must still see a finished job at the first status check
MinJobAge={info.min_job_age}
KillWait=5
InactiveLimit=0
MailProg=/bin/true
{"GresTypes=gpu" if info.gpus else ""}
NodeName={info.hostname} NodeAddr=127.0.0.1 CPUs={info.cpus} RealMemory={info.mem_mb}{gres_node} State=UNKNOWN
PartitionName={info.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _make_fake_gpus(devdir: Path, n: int) -> list[Path]:
    devdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = devdir / f"fakegpu{i}"
        if p.exists() or p.is_symlink():
            p.unlink()
        # character device with /dev/null's numbers: slurmd rejects plain files
        os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        paths.append(p)
    return paths


def _munge_works() -> bool:
    try:
        enc = subprocess.run(["munge", "-n"], capture_output=True, timeout=10, env=_daemon_env())
        if enc.returncode != 0:
            return False
        dec = subprocess.run(["unmunge"], input=enc.stdout, capture_output=True, timeout=10, env=_daemon_env())
        return dec.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _ensure_munge_key() -> None:
    import grp
    import pwd

    uid = pwd.getpwnam("munge").pw_uid
    gid = grp.getgrnam("munge").gr_gid
    MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
    os.chown(MUNGE_KEY.parent, uid, gid)
    MUNGE_KEY.parent.chmod(0o700)
    if not MUNGE_KEY.exists() or MUNGE_KEY.stat().st_size < 32:
        _log(f"writing a new munge key to {MUNGE_KEY}")
        tmp = MUNGE_KEY.with_name("munge.key.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
        os.replace(tmp, MUNGE_KEY)
    os.chown(MUNGE_KEY, uid, gid)
    MUNGE_KEY.chmod(0o400)
    MUNGE_RUN_DIR.mkdir(parents=True, exist_ok=True)
    os.chown(MUNGE_RUN_DIR, uid, gid)
    MUNGE_RUN_DIR.chmod(0o755)
    for d in (Path("/var/lib/munge"), Path("/var/log/munge")):
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, uid, gid)


def _record(info: ClusterInfo, name: str, pid: int) -> None:
    ident = _proc_identity(pid)
    if ident is None:
        raise SlurmStartupError(f"{name} (pid {pid}) exited right after starting\n{info.diagnostics()}")
    entry = {"name": name, "comm": ident[0], "pid": pid, "starttime": ident[1]}
    info.started.append(entry)
    _registry_save(_registry_load() + [entry])


def _start_daemon(info: ClusterInfo, name: str, cmd: list[str], pidfile: Path, log: Path, timeout: float) -> int:
    """Run a self-daemonising program and return the daemon's pid from its pid file."""
    stdout_file = info.log_dir / f"{name}.stdout"
    pidfile.unlink(missing_ok=True)
    with open(stdout_file, "ab") as out:
        # a file, not a pipe: the daemon inherits these fds and would keep a pipe open
        p = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            timeout=timeout, env=_daemon_env(), start_new_session=True,
        )
    if p.returncode != 0:
        raise SlurmStartupError(
            f"`{' '.join(cmd)}` exited with {p.returncode}\n--- {stdout_file} ---\n"
            f"{tail(stdout_file)}\n--- {log} ---\n{tail(log)}"
        )

    def pid_ready():
        pid = _read_pidfile(pidfile)
        if pid and _proc_identity(pid):
            return pid
        for f in (log, stdout_file):
            try:
                if "fatal:" in f.read_text(errors="replace"):
                    raise SlurmStartupError(f"{name} failed to start:\n--- {f} ---\n{tail(f)}")
            except OSError:
                pass
        return None

    pid = _wait_for(pid_ready, timeout)
    if not pid:
        raise SlurmStartupError(
            f"{name} did not write a live pid to {pidfile} within {timeout:.0f}s\n"
            f"--- {log} ---\n{tail(log)}\n--- {stdout_file} ---\n{tail(stdout_file)}"
        )
    _record(info, name, pid)
    return pid


def _stepd_pids() -> set[int]:
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            ident = _proc_identity(int(d.name))
            if ident and ident[0].startswith("slurmstepd"):
                pids.add(int(d.name))
    return pids


def _node_state(info: ClusterInfo) -> str:
    p = _run(["sinfo", "-h", "-N", "-n", info.hostname, "-o", "%T"], timeout=15)
    return p.stdout.strip().lower() if p.returncode == 0 else ""


def _stop_cluster(info: ClusterInfo) -> None:
    """Cancel jobs, stop the daemons this helper started (and their step daemons), remove config files."""
    ctld_up = any(e["name"] == "slurmctld" and _alive(e["pid"], e["starttime"]) for e in info.started)
    if ctld_up:
        try:
            jobs = _run(["squeue", "-h", "-o", "%i"], timeout=15).stdout.split()
            if jobs:
                _log(f"cancelling {len(jobs)} leftover job(s)")
                _run(["scancel", *jobs], timeout=15)
                _wait_for(lambda: not _run(["squeue", "-h", "-o", "%i"], timeout=15).stdout.strip(), 20, 0.5)
        except (OSError, subprocess.SubprocessError) as exc:
            _log(f"could not cancel jobs: {exc}")
    for name in ("slurmd", "slurmctld", "munged"):
        for e in info.started:
            if e["name"] == name:
                _stop_pid(name, e["pid"], e["starttime"])
    # step daemons of cancelled jobs that outlived slurmd (started by our slurmd)
    for pid in _stepd_pids() - info.preexisting_stepds:
        ident = _proc_identity(pid)
        if ident:
            _stop_pid(ident[0], pid, ident[1], timeout=5)
    remaining = [e for e in _registry_load() if not any(e["pid"] == s["pid"] for s in info.started)]
    _registry_save(remaining)
    info.started.clear()
    for path in (SLURM_CONF, GRES_CONF):
        try:
            if MARKER in path.read_text(errors="replace"):
                path.unlink()
        except OSError:
            pass
    for d in info.extra_dirs:
        shutil.rmtree(d, ignore_errors=True)


# The running cluster is remembered on the `sys` module, not in a module
# global: this file may be imported twice under two names (`slurm_cluster`
# with tests/ on sys.path, `tests.slurm_cluster` from the repository root), and
# both copies must see the same cluster.
_ACTIVE_ATTR = "_convergent_test_slurm_cluster"


def active_cluster() -> ClusterInfo | None:
    """The cluster started by slurm_cluster() in this process, if any."""
    return getattr(sys, _ACTIVE_ATTR, None)


def _set_active(info: ClusterInfo | None) -> None:
    setattr(sys, _ACTIVE_ATTR, info)


@contextlib.contextmanager
def slurm_cluster(
    tmpdir: os.PathLike | str,
    *,
    gpus: int = 2,
    allow_install: bool | None = None,
    timeout: float = 120.0,
) -> Iterator[ClusterInfo]:
    """Start a single-node SLURM cluster with state in ``tmpdir``; stop it on exit.

    Raises SlurmUnavailable if it cannot run here (the caller decides to skip),
    SlurmStartupError if starting failed (message has daemon log tails).
    """
    if active_cluster() is not None:
        raise SlurmStartupError("a test SLURM cluster is already running in this process; use active_cluster()")
    ensure_slurm_available(allow_install)
    t0 = time.monotonic()
    root = Path(tmpdir).resolve() / "slurm-cluster"
    if root.exists():
        shutil.rmtree(root)
    state, spool, run, logs, dev = (root / d for d in ("state", "spool", "run", "log", "dev"))
    for d in (state, run, logs):
        d.mkdir(parents=True)
    extra_dirs = []
    if len(str(spool)) > 60:
        # slurmd puts unix sockets (<= 108 chars) for every job step in its spool dir
        spool = Path(tempfile.mkdtemp(prefix="cvg-slurmd-", dir="/tmp"))
        extra_dirs.append(spool)
    else:
        spool.mkdir()
    cpus, mem_mb = _node_resources()
    info = ClusterInfo(
        root=root, hostname=socket.gethostname().split(".")[0], cpus=cpus, mem_mb=mem_mb, gpus=0,
        partition=PARTITION, slurm_conf=SLURM_CONF, log_dir=logs, extra_dirs=extra_dirs,
    )
    info.preexisting_stepds = _stepd_pids()

    # Turn SIGTERM (e.g. a CI timeout killing pytest) into an exception so the
    # finally-block still stops the daemons. SIGKILL is handled by the registry.
    old_handler = None
    if hasattr(signal, "SIGTERM") and _is_main_thread():
        def _on_term(signum, frame):
            raise SystemExit(f"terminated by signal {signum}")
        old_handler = signal.signal(signal.SIGTERM, _on_term)
    try:
        cleanup_stale()
        for port, what in ((CTLD_PORT, "slurmctld"), (SLURMD_PORT, "slurmd")):
            if _port_open(port):
                raise SlurmStartupError(
                    f"port {port} on 127.0.0.1 is already in use (another {what}?); a second cluster on the "
                    "same machine must stop the first one"
                )

        # --- munge ---------------------------------------------------------
        _ensure_munge_key()
        if _munge_works():
            _log("reusing the munged that is already running")
        else:
            for name in ("munge.socket.2", "munge.socket.2.lock"):
                # a dead munged's socket/lock would make the new one refuse to start
                (MUNGE_RUN_DIR / name).unlink(missing_ok=True)
            # munged runs as user munge and cannot enter pytest's 0700 tmp dirs:
            # it keeps its default pid/log/seed files under /run/munge, /var/log/munge, /var/lib/munge
            cmd = ["runuser", "-u", "munge", "--", which("munged") or "/usr/sbin/munged"]
            _start_daemon(info, "munged", cmd, MUNGE_RUN_DIR / "munged.pid", info.munged_log, timeout=30)
            if not _wait_for(_munge_works, 20):
                raise SlurmStartupError(f"munged started but `munge -n | unmunge` fails\n{tail(info.munged_log)}")

        # --- config ----------------------------------------------------------
        if gpus > 0:
            try:
                devs = _make_fake_gpus(dev, gpus)
                _write_conf(
                    GRES_CONF,
                    MARKER + "\n" + "".join(
                        f"NodeName={info.hostname} Name=gpu Type=fake File={p}\n" for p in devs
                    ),
                )
                info.gpus = gpus
            except OSError as exc:
                _log(f"cannot create fake GPU devices ({exc}); the cluster will have no GPUs")
        if not info.gpus and GRES_CONF.exists() and MARKER in GRES_CONF.read_text(errors="replace"):
            GRES_CONF.unlink()
        _write_conf(SLURM_CONF, _slurm_conf_text(info, state, spool, run))

        # --- slurmctld ---------------------------------------------------------
        _start_daemon(info, "slurmctld", [which("slurmctld")], run / "slurmctld.pid", info.slurmctld_log, timeout=30)
        if not _wait_for(lambda: "UP" in _run(["scontrol", "ping"], timeout=10).stdout, timeout):
            raise SlurmStartupError(f"slurmctld does not answer `scontrol ping` after {timeout:.0f}s\n{info.diagnostics()}")

        # --- slurmd --------------------------------------------------------------
        _start_daemon(info, "slurmd", [which("slurmd"), "-N", info.hostname], run / "slurmd.pid", info.slurmd_log, timeout=30)

        resumed = False

        def node_idle():
            nonlocal resumed
            st = _node_state(info)
            if st in ("idle", "mixed", "allocated"):
                return st
            # ReturnToService=2 should do this; nudge once if the node came up down/drained
            if not resumed and st.rstrip("*~#") in ("down", "drained", "draining") and not st.endswith("*"):
                resumed = True
                _run(["scontrol", "update", f"NodeName={info.hostname}", "State=RESUME"], timeout=10)
            return None

        if not _wait_for(node_idle, timeout, 0.5):
            raise SlurmStartupError(
                f"node {info.hostname} is not idle after {timeout:.0f}s (state {_node_state(info)!r})\n{info.diagnostics()}"
            )
        info.startup_seconds = time.monotonic() - t0
        _log(f"cluster up in {info.startup_seconds:.1f}s: node {info.hostname}, {info.cpus} CPUs, "
             f"{info.mem_mb} MB, {info.gpus} fake GPUs, state in {root}")
        _set_active(info)
        yield info
    finally:
        _set_active(None)
        try:
            _stop_cluster(info)
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# --------------------------------------------------------------------------- #
# profiles and running snakemake
# --------------------------------------------------------------------------- #
def _load_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def make_test_profile(
    dest: os.PathLike | str,
    cluster: ClusterInfo,
    base_profile: os.PathLike | str = PROFILES_DIR / "slurm",
    overrides: Mapping | None = None,
) -> Path:
    """Write ``dest/config.yaml``: the user profile plus the keys only this test cluster needs.

    The user profile is copied, not edited. Added: LOCAL_CLUSTER_PROFILE_KEYS,
    ``cores`` = node CPUs, ``slurm_partition`` and an empty ``slurm_account``.
    Clamped so every job fits the node: threads to the node's CPUs, mem_mb to
    node memory / CPUs (memory is not enforced here, it is only bookkeeping),
    GPUs dropped when the node has none.
    """
    import yaml

    base_profile = Path(base_profile)
    base_file = base_profile if base_profile.is_file() else base_profile / "config.yaml"
    cfg = _load_yaml(base_file)
    cfg.update(LOCAL_CLUSTER_PROFILE_KEYS)
    cfg["cores"] = cluster.cpus
    mem_cap = max(256, cluster.mem_mb // max(1, cluster.cpus))

    def clamp(res: dict) -> dict:
        res = dict(res)
        if isinstance(res.get("mem_mb"), int):
            res["mem_mb"] = min(res["mem_mb"], mem_cap)
        for key in ("gpu", "gpus"):
            if key in res and not cluster.gpus:
                res.pop(key)
            elif isinstance(res.get(key), int):
                res[key] = min(res[key], cluster.gpus)
        return res

    defaults = clamp(cfg.get("default-resources") or {})
    defaults["slurm_partition"] = cluster.partition
    defaults["slurm_account"] = ""  # with slurm-no-account: no -A at all
    cfg["default-resources"] = defaults
    if cfg.get("set-resources"):
        cfg["set-resources"] = {rule: clamp(res) for rule, res in cfg["set-resources"].items()}
    if cfg.get("set-threads"):
        cfg["set-threads"] = {rule: min(int(t), cluster.cpus) for rule, t in cfg["set-threads"].items()}
    if overrides:
        cfg.update(overrides)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Generated by tests/slurm_cluster.py from {base_file}\n"
        "# plus the settings only the local test cluster needs. Do not copy to a real cluster.\n"
    )
    (dest / "config.yaml").write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    return dest


def snakemake_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the snakemake subprocess: no inherited SLURM_*/profile variables."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SNAKEMAKE_PROFILE", "PYTEST_"))
    }
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "/usr/bin:/bin"), *SBIN_DIRS])
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


class SnakemakeTimeout(AssertionError):
    pass


def run_snakemake_on_slurm(
    workdir: os.PathLike | str,
    snakefile: os.PathLike | str,
    configfile: os.PathLike | str | None = None,
    extra_args: Iterable[str] = (),
    *,
    cluster: ClusterInfo | None = None,
    base_profile: os.PathLike | str = PROFILES_DIR / "slurm",
    profile_overrides: Mapping | None = None,
    workflow_profile: str | None = "none",
    timeout: float = 1800.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``snakemake --profile <test profile>`` in a subprocess in ``workdir``.

    The test profile is ``base_profile`` + the local-cluster keys (see
    make_test_profile), written to ``workdir/.test-slurm-profile``. The
    workflow profile (``profiles/default``) is disabled unless
    ``workflow_profile`` names one: it would override the SLURM profile's keys.
    stdout+stderr are captured (text) and also appended to
    ``workdir/snakemake-slurm.log``. On timeout, snakemake gets SIGINT (it
    cancels its SLURM jobs), then SIGKILL, and SnakemakeTimeout is raised with
    diagnostics.
    """
    cluster = cluster or active_cluster()
    if cluster is None:
        raise RuntimeError("no test SLURM cluster is running: use slurm_cluster() or the slurm_cluster_info fixture")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    profile = make_test_profile(workdir / ".test-slurm-profile", cluster, base_profile, profile_overrides)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(Path(snakefile).resolve()),
           "--directory", str(workdir), "--profile", str(profile)]
    cmd += ["--workflow-profile", workflow_profile or "none"]
    if configfile is not None:
        cmd += ["--configfile", str(Path(configfile).resolve())]
    cmd += list(extra_args)
    _log("running: " + " ".join(cmd))
    logfile = workdir / "snakemake-slurm.log"
    t0 = time.monotonic()
    # Output goes straight to the log file (tail -f it while a long run is going)
    # and is read back afterwards.
    with open(logfile, "a") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(cmd)}\n")
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen(cmd, cwd=workdir, env=snakemake_env(env), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGINT)  # snakemake cancels its SLURM jobs on SIGINT
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    with open(logfile, "rb") as f:
        f.seek(offset)
        out = f.read().decode(errors="replace")
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, "")
    if timed_out:
        raise SnakemakeTimeout(f"snakemake did not finish within {timeout:.0f}s\n" + describe_run(result, workdir, cluster))
    _log(f"snakemake finished with rc={proc.returncode} in {time.monotonic() - t0:.1f}s")
    return result


def slurm_log_files(workdir: os.PathLike | str) -> list[Path]:
    d = Path(workdir) / ".snakemake" / "slurm_logs"
    return sorted(p for p in d.rglob("*.log") if p.is_file()) if d.exists() else []


def describe_run(proc: subprocess.CompletedProcess, workdir: os.PathLike | str, cluster: ClusterInfo | None = None) -> str:
    """Everything useful for a failed run: snakemake output, SLURM job logs, squeue, daemon logs."""
    parts = [f"$ {' '.join(map(str, proc.args))}\nreturn code {proc.returncode}",
             "--- snakemake output (tail) ---", _tail_text(proc.stdout, 80), _tail_text(proc.stderr, 40)]
    for log in slurm_log_files(workdir)[-6:]:
        parts.append(f"--- {log} ---\n{tail(log, 25)}")
    cluster = cluster or active_cluster()
    if cluster is not None:
        parts.append(cluster.diagnostics(20))
    return "\n".join(parts)


def completed_jobs(cluster: ClusterInfo | None = None) -> dict[str, dict[str, str]]:
    """Every job slurmctld still remembers (finished ones for MinJobAge s; no sacct here).

    job id -> {"state", "cpus", "tres" (allocated, e.g. "cpu=1,mem=3000M,node=1,billing=1"),
    "gres" (requested per job/node, e.g. "gres:gpu:1"), "time_limit" (e.g. "1:30:00"), "name"}
    """
    p = _run(["squeue", "-h", "-t", "all", "-O",
              "JobID:|,State:|,NumCPUs:|,tres-alloc:|,tres-per-job:|,tres-per-node:|,TimeLimit:|,Name"], timeout=15)
    jobs = {}
    for line in p.stdout.splitlines():
        f = [x.strip() for x in line.split("|")]
        if len(f) >= 8 and f[0]:
            gres = ",".join(x for x in (f[4], f[5]) if x and x.upper() != "N/A")
            jobs[f[0]] = {"state": f[1], "cpus": f[2], "tres": f[3], "gres": gres, "time_limit": f[6], "name": f[7]}
    return jobs


# --------------------------------------------------------------------------- #
# pytest fixture
# --------------------------------------------------------------------------- #
try:
    import pytest
except ImportError:  # the module is also usable without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def slurm_cluster_info(tmp_path_factory) -> Iterator[ClusterInfo]:
        """Session-wide single-node SLURM cluster.

        Skips when SLURM is missing and installing is not allowed, or when not
        root; under CI=true it fails instead of skipping. Reuses a cluster that
        is already running in this process, so importing this fixture into
        several modules/conftests never starts two.
        """
        if active_cluster() is not None:
            yield active_cluster()
            return
        try:
            ensure_slurm_available()
        except SlurmUnavailable as exc:
            if is_ci():
                pytest.fail(f"CI=true but no SLURM test cluster can be started: {exc}", pytrace=False)
            pytest.skip(f"no SLURM test cluster: {exc}")
        with contextlib.ExitStack() as stack:
            for attempt in (1, 2):  # one retry: a failed start cleans up after itself
                try:
                    info = stack.enter_context(slurm_cluster(tmp_path_factory.mktemp("slurm")))
                    break
                except SlurmStartupError as exc:
                    if attempt == 2:
                        pytest.fail(f"could not start the SLURM test cluster:\n{exc}", pytrace=False)
                    _log(f"cluster start failed, retrying once:\n{exc}")
            yield info
