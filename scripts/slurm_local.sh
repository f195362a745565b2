#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying sweeps and srun and for the test suite:
# Debian's munge, slurmctld and slurmd run directly (no systemd), with their key, config, state and
# logs in one directory; this host is the only node, with its real CPU count and memory (slurmd -C).
#
#   scripts/slurm_local.sh up     start it (idempotent); prints the line to export
#   scripts/slurm_local.sh down   stop it
#   scripts/slurm_local.sh env    print "export SLURM_CONF=..." (eval "$(scripts/slurm_local.sh env)")
#
# Then: export SLURM_CONF=<dir>/slurm.conf; sinfo; sbatch ...; strata sweep SWEEP.yaml --executor slurm;
# srun -n 2 build/strata train CFG (MpiDefault=pmix: Open MPI's ranks find each other through PMIx).
# Needs root (slurmd launches jobs as their user) and the packages slurm-wlm and munge
# (scripts/deps.sh installs them). Exit 3 with the reason when the cluster cannot be started here.
# STRATA_SLURM_DIR (default /tmp/strata-slurm) and STRATA_SLURM_PORT (default 16817; slurmd uses
# the next port) keep it apart from any real Slurm on the machine.
set -euo pipefail
cmd="${1:-}"
dir="${STRATA_SLURM_DIR:-/tmp/strata-slurm}"
port="${STRATA_SLURM_PORT:-16817}"
conf="$dir/slurm.conf"

cannot() { echo "slurm_local: cannot start Slurm here: $*" >&2; exit 3; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  for p in slurmd slurmctld munged; do
    if alive "$dir/$p.pid"; then
      pid=$(cat "$dir/$p.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$p.pid"
  done
}

case "$cmd" in
  env)
    echo "export SLURM_CONF=$conf"
    ;;
  down)
    stop
    echo "slurm_local: stopped (state kept in $dir)" >&2
    ;;
  up)
    for b in munged slurmctld slurmd sbatch sinfo; do
      command -v "$b" >/dev/null || PATH="$PATH:/usr/sbin" command -v "$b" >/dev/null ||
        cannot "'$b' not found (apt-get install slurm-wlm munge; scripts/deps.sh does)"
    done
    export PATH="$PATH:/usr/sbin"
    [ "$(id -u)" -eq 0 ] || cannot "not root (slurmd must run as root to start jobs)"
    if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid" && alive "$dir/munged.pid"; then
      echo "slurm_local: already up; export SLURM_CONF=$conf" >&2
      exit 0
    fi
    stop
    mkdir -p "$dir/munge" "$dir/ctld" "$dir/d"
    chmod 700 "$dir/munge"
    # Our own munge key and socket: nothing of a system munge is touched.
    if [ ! -s "$dir/munge/munge.key" ]; then
      dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
      chmod 400 "$dir/munge/munge.key"
    fi
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
      --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munge.seed" ||
      cannot "munged failed: $(tail -3 "$dir/munged.log" 2>/dev/null)"
    host=$(hostname -s)
    node=$(slurmd -C | head -1)  # "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105": this machine as it is
    [[ $node == NodeName=* ]] || cannot "slurmd -C did not describe this node: $node"
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<< "$node")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<< "$node")
    cat > "$conf" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster on $host.
ClusterName=strata-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
# No cgroups (containers rarely allow them): processes are tracked through /proc. task/affinity binds
# each task to its CPUs (sched_setaffinity), so OpenMP in a task of srun -n 2 starts one thread, not
# one per core of the node.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
# A job without --mem gets its share of memory per CPU, not the whole node (which would run one job at a time).
DefMemPerCPU=$(( mem / (cpus > 0 ? cpus : 1) ))
# srun starts MPI programs through PMIx (Open MPI's direct launch) without --mpi=pmix, as on most clusters.
MpiDefault=pmix
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
MinJobAge=300
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    export SLURM_CONF="$conf"
    # -c: a fresh state (no jobs from an earlier run); -i: ignore stale state files.
    slurmctld -c -i -f "$conf" || cannot "slurmctld failed: $(tail -5 "$dir/slurmctld.log" 2>/dev/null)"
    slurmd -N "$host" -f "$conf" || cannot "slurmd failed: $(tail -5 "$dir/slurmd.log" 2>/dev/null)"
    for _ in $(seq 1 150); do
      state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
      case "$state" in idle|mix|alloc) break ;; esac
      sleep 0.2
    done
    case "$state" in
      idle|mix|alloc) ;;
      *) stop; cannot "the node did not come up (state '$state'); slurmctld.log: $(tail -5 "$dir/slurmctld.log" 2>/dev/null) slurmd.log: $(tail -5 "$dir/slurmd.log" 2>/dev/null)" ;;
    esac
    echo "slurm_local: up: $(sinfo -h -N -o '%N %c CPUs %m MB %t' | head -1); export SLURM_CONF=$conf" >&2
    ;;
  *)
    echo "usage: $0 up|down|env" >&2
    exit 2
    ;;
esac
