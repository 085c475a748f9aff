#!/usr/bin/env bash
# Start a one-node SLURM cluster on loopback (Debian's slurm-wlm + munge), as root, for the
# SLURM test. Idempotent: a running cluster is left as it is. Prints "ready" when the node is idle.
# Usage: sudo bash tests/slurm/start_local_slurm.sh   (then: sinfo, sbatch --wrap hostname)
set -euo pipefail
command -v slurmctld >/dev/null || { echo "slurm-wlm is not installed"; exit 3; }
command -v munged >/dev/null || { echo "munge is not installed"; exit 3; }
[ "$(id -u)" -eq 0 ] || { echo "must run as root"; exit 3; }

node=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge /etc/slurm \
         /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge 2>/dev/null || true
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c "/usr/sbin/munged" 2>/dev/null \
    || /usr/sbin/munged --force

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=sherlock-local
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=900
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=local Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 60); do
    if sinfo -h -o "%T" 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then
        echo ready
        exit 0
    fi
    scontrol update nodename="${node}" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "SLURM did not become ready:"
sinfo 2>&1 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log 2>/dev/null || true
exit 4
