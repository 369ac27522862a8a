"""A real single-node SLURM on loopback for the tests: munged, slurmctld and slurmd.

Everything lives in one scratch folder (configuration, state, spool, logs, the
munge socket), on free ports, so the cluster touches nothing of the machine's
own SLURM or munge set-up. The daemons need root (slurmd starts jobs as their
user) and the Debian packages slurmctld, slurmd, slurm-client and munge.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "parallel")
MUNGE_KEY = "/etc/munge/munge.key"


def missing_requirements():
    """Why a cluster cannot start here (empty string when it can)."""
    if os.geteuid() != 0:
        return "the SLURM daemons need root"
    absent = [b for b in BINARIES if not shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin")]
    if absent:
        return f"not installed: {', '.join(absent)} (apt-get install slurmctld slurmd slurm-client munge parallel)"
    if not os.path.exists(MUNGE_KEY):
        return f"{MUNGE_KEY} is missing"
    return ""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_resources():
    out = subprocess.run(["/usr/sbin/slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    cpus = int(re.search(r"CPUs=(\d+)", out).group(1))
    memory = int(re.search(r"RealMemory=(\d+)", out).group(1))
    return cpus, int(memory * 0.8)  # more than slurmd finds drains the node


class SlurmCluster:
    """Start, use and stop a one-node SLURM whose state is under a scratch folder.

    Attributes
    ----------
    root : str
        The scratch folder.
    conf : str
        Its slurm.conf (export ``SLURM_CONF`` to use the cluster).
    cpus : int
        CPUs of the node.
    """

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="ceers-slurm-")
        os.chmod(self.root, 0o755)
        self.conf = os.path.join(self.root, "slurm.conf")
        self.jobcomp = os.path.join(self.root, "log", "jobcomp.txt")
        self.host = socket.gethostname().split(".")[0]
        self.cpus, self.memory = _node_resources()
        self._pidfiles = []

    @property
    def env(self):
        return {"SLURM_CONF": self.conf}

    def _write_conf(self):
        r = self.root
        for sub in ("state", "spool", "log"):
            os.makedirs(os.path.join(r, sub), exist_ok=True)
        settings = {
            "ClusterName": "ceerstest", "SlurmctldHost": f"{self.host}(127.0.0.1)",
            "SlurmctldPort": _free_port(), "SlurmdPort": _free_port(),
            "AuthType": "auth/munge", "CredType": "cred/munge",
            "AuthInfo": f"socket={r}/munge/munge.socket",
            "SlurmUser": "root", "SlurmdUser": "root",
            "StateSaveLocation": f"{r}/state", "SlurmdSpoolDir": f"{r}/spool",
            "SlurmctldPidFile": f"{r}/slurmctld.pid", "SlurmdPidFile": f"{r}/slurmd.pid",
            "SlurmctldLogFile": f"{r}/log/slurmctld.log", "SlurmdLogFile": f"{r}/log/slurmd.log",
            "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/filetxt", "JobCompLoc": self.jobcomp,
            # Without it a job waiting afterok on a failed job stays PENDING for ever.
            "DependencyParameters": "kill_invalid_depend",
            # Dependencies are checked every 2 s instead of every minute.
            "SchedulerParameters": "sched_interval=2",
            "ReturnToService": "2", "MpiDefault": "none", "MailProg": "/bin/true",
            "MinJobAge": "3600",
        }
        lines = [f"{k}={v}" for k, v in settings.items()]
        lines.append(f"NodeName={self.host} CPUs={self.cpus} RealMemory={self.memory} State=UNKNOWN")
        lines.append("PartitionName=normal Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        with open(self.conf, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def _start_munge(self):
        folder = os.path.join(self.root, "munge")
        os.makedirs(folder)
        shutil.chown(folder, "munge", "munge")
        os.chmod(folder, 0o755)
        pidfile = os.path.join(folder, "munged.pid")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged",
                        f"--socket={folder}/munge.socket", f"--pid-file={pidfile}",
                        f"--log-file={folder}/munged.log", f"--seed-file={folder}/munged.seed"],
                       check=True, capture_output=True)
        self._pidfiles.append(pidfile)

    def start(self, timeout=30):
        """Start munged, slurmctld and slurmd; wait until the node is idle."""
        self._write_conf()
        self._start_munge()
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([f"/usr/sbin/{daemon}", "-f", self.conf], check=True, capture_output=True)
            self._pidfiles.insert(0, os.path.join(self.root, f"{daemon}.pid"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.5)
        raise RuntimeError(f"SLURM node not idle after {timeout} s (state {state!r}); "
                           f"see {self.root}/log")

    def stop(self):
        """Stop the daemons by the PIDs in their pid files (slurmd, slurmctld, munged)."""
        for pidfile in self._pidfiles:
            try:
                with open(pidfile) as fh:
                    pid = int(fh.read().strip())
                os.kill(pid, 15)
            except (OSError, ValueError):
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
        self._pidfiles = []

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def run(self, *args, check=True):
        """Run a SLURM client command against this cluster."""
        env = dict(os.environ, **self.env)
        return subprocess.run(list(args), capture_output=True, text=True, env=env, check=check)

    def finished_jobs(self):
        """{job id: (state, exit code)} of every job the cluster has finished."""
        jobs = {}
        try:
            with open(self.jobcomp) as fh:
                for text in fh:
                    fields = dict(re.findall(r"(\w+)=(\S*)", text))
                    if "JobId" in fields:
                        code = int(fields.get("ExitCode", "0:0").split(":")[0])
                        jobs[fields["JobId"]] = (fields.get("JobState", "?"), code)
        except OSError:
            pass
        return jobs

    def wait(self, job_ids, timeout=300):
        """Wait until every job has ended; return {job id: (state, exit code)}."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.finished_jobs()
            if all(j in done for j in job_ids):
                return {j: done[j] for j in job_ids}
            time.sleep(1.0)
        queue = self.run("squeue", "-h", check=False).stdout
        raise TimeoutError(f"jobs {job_ids} not finished after {timeout} s; queue:\n{queue}")
