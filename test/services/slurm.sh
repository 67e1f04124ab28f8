#!/bin/bash
# Start a throwaway single-node Slurm cluster (munged + slurmctld + slurmd, all as root) for tests.
# Usage: slurm.sh STATE_DIR CTLD_PORT SLURMD_PORT
# Writes STATE_DIR/slurm.conf (export SLURM_CONF=STATE_DIR/slurm.conf for sbatch/squeue/scontrol) and
# prints "ready" once the node is idle. Daemons' pids: STATE_DIR/*.pid. Settings: FACTS.md.
set -euo pipefail
D=$1; CP=$2; SP=$3
mkdir -p "$D"/{munge,spool/localhost,state,log}
chmod 711 "$D/munge"
mungekey --create --keyfile="$D/munge/munge.key" --force
chmod 600 "$D/munge/munge.key"
munged --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket.2" --pid-file="$D/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/seed" --force
CPUS=$(nproc)
cat > "$D/slurm.conf" <<CONF
ClusterName=rhotest
SlurmctldHost=localhost
SlurmctldPort=$CP
SlurmdPort=$SP
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket.2
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
ReturnToService=2
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
MaxArraySize=1001
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
export SLURM_CONF="$D/slurm.conf"
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 1 200); do
  if sinfo -h -o %T 2>/dev/null | grep -qx idle; then echo ready; exit 0; fi
  sleep 0.1
done
echo "slurm node did not become idle within 20 s; logs in $D/log" >&2
sinfo >&2 || true
exit 1
