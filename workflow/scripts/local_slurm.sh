#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for testing the SLURM profile (tests/test_slurm.py):
#   workflow/scripts/local_slurm.sh start [DIR]   # munged + slurmctld + slurmd; prints `export SLURM_CONF=...`
#   workflow/scripts/local_slurm.sh stop [DIR]    # stops the daemons started by `start`
# Needs root and Debian's slurm-wlm and munge (`apt-get install slurm-wlm munge`). No systemd, no
# accounting database (AccountingStorageType=accounting_storage/none): job states come from
# squeue, which keeps finished jobs for MinJobAge seconds. Partitions `cpu` and `gpu` both hold
# this node (it has no GPUs), so the profile's partition names work unchanged. While it runs,
# /etc/slurm/slurm.conf is a symlink to DIR/slurm.conf (refuses to start when that file exists).
set -euo pipefail

ACTION=${1:?usage: local_slurm.sh start|stop [DIR]}
DIR=${2:-${ANIMBENCH_SLURM_DIR:-/tmp/animbench-slurm}}
NODE=$(hostname -s)
# Ports away from the defaults, so a site's own slurmd on 6817/6818 is never touched.
CTLD_PORT=${ANIMBENCH_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${ANIMBENCH_SLURM_SLURMD_PORT:-16818}
DEFAULT_CONF=/etc/slurm/slurm.conf

wait_for() {  # wait_for SECONDS COMMAND...: poll until COMMAND succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then echo "local_slurm: timed out waiting for: $*" >&2; return 1; fi
        sleep 0.5
    done
}

stop_pidfile() {
    local file=$1
    if [[ -s $file ]]; then
        local pid; pid=$(cat "$file")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
        rm -f "$file"
    fi
}

start() {
    [[ $(id -u) == 0 ]] || { echo "local_slurm: needs root (slurmd and munged)" >&2; exit 1; }
    for tool in munged slurmctld slurmd sbatch squeue; do
        command -v "$tool" >/dev/null || { echo "local_slurm: $tool missing; run: apt-get install slurm-wlm munge" >&2; exit 1; }
    done
    mkdir -p "$DIR"/{state,spool,log}

    # munge: the clients (sbatch, squeue) talk to the default socket, so reuse a running munged.
    if ! (munge -n | unmunge) >/dev/null 2>&1; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
        [[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
        chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
        # munged runs as its own user, which cannot write to $DIR: its pid file goes to /run/munge.
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/animbench-munged.pid
        wait_for 20 sh -c 'munge -n | unmunge'
        cp /run/munge/animbench-munged.pid "$DIR/munged.pid"
    fi

    cat > "$DIR/slurm.conf" <<EOF
ClusterName=animbench
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Finished jobs stay visible to squeue this long: the executor plugin reads their final state there.
MinJobAge=600
# The node's declared size is taken as is (jobs ask for the profile's memory and threads).
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=16 RealMemory=1000000 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$DIR/slurm.conf
    # Inside a job the executor plugin runs `srun` with every SLURM_* variable removed, so
    # SLURM_CONF does not reach it: srun reads the default path, which must then be ours.
    if [[ -e $DEFAULT_CONF || -L $DEFAULT_CONF ]] && [[ $(readlink "$DEFAULT_CONF") != "$SLURM_CONF" ]]; then
        echo "local_slurm: $DEFAULT_CONF exists (a real cluster's?); this script only runs where there is none" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$DEFAULT_CONF")"
    ln -sfn "$SLURM_CONF" "$DEFAULT_CONF"
    # -c: start from a clean state (no jobs of an earlier test run).
    slurmctld -c -f "$SLURM_CONF"
    wait_for 30 scontrol ping
    slurmd -f "$SLURM_CONF" -N "$NODE"
    wait_for 60 sh -c "sinfo -h -n $NODE -o %t | grep -q idle"
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop() {
    stop_pidfile "$DIR/slurmd.pid"
    stop_pidfile "$DIR/slurmctld.pid"
    stop_pidfile "$DIR/munged.pid"   # only a munged that `start` launched has this file
    if [[ -L $DEFAULT_CONF && $(readlink "$DEFAULT_CONF") == "$DIR/slurm.conf" ]]; then
        rm -f "$DEFAULT_CONF"
    fi
}

case $ACTION in
    start) start ;;
    stop) stop ;;
    *) echo "usage: local_slurm.sh start|stop [DIR]" >&2; exit 2 ;;
esac
