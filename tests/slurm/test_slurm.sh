#!/bin/sh
# A merge split over a real Slurm cluster: this script starts a one-node
# cluster of its own on localhost (munged, slurmctld and slurmd, with their
# configuration, keys, state and logs in a scratch folder, on ports of
# their own), submits the merge as a job array (sbatch --array, each task
# running --part auto), then weld join as a job that depends on the array,
# and compares the result byte for byte with the merge run on one machine.
# The daemons it started are stopped at the end.
#
# Needs root (munged and slurmd run as the calling user, and slurmd must be
# root to run jobs) and Debian's slurm-wlm and munge: `make check-slurm`
# installs them. When they are missing, or the cluster does not come up,
# the checks are skipped with the reason, unless SLURM_REQUIRED=1 (as
# check-slurm sets), which makes that a failure.
. "$(dirname "$0")/../cli/harness.sh"
REQUIRED=${SLURM_REQUIRED:-0}

give_up() {
	if [ "$REQUIRED" = 1 ]; then not_ok "$1"; else skip "$1"; fi
	summary
	exit
}

for c in munged munge slurmctld slurmd sbatch sinfo; do
	command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
	command -v "$c" >/dev/null 2>&1 ||
		give_up "a Slurm job array runs the parts ($c is not installed: make check-slurm installs slurm-wlm and munge)"
done
[ "$(id -u)" = 0 ] || give_up "a Slurm job array runs the parts (the test cluster's slurmd must run as root)"

C=$T/cluster
mkdir -p "$C/munge" "$C/state" "$C/spool" "$C/log" "$C/out"
chmod 700 "$T" "$C/munge"
stop_cluster() {
	for f in "$C/slurmd.pid" "$C/slurmctld.pid" "$C/munge/munged.pid"; do
		[ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	sleep 1
}
trap 'stop_cluster; rm -rf "$T"' EXIT

# a port pair of our own, so that two runs (or a real cluster) do not meet
port=$((20000 + ($$ % 15000) * 2))
node=$(hostname -s)
cpus=$(nproc)
dd if=/dev/urandom of="$C/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$C/munge/munge.key"
: >"$C/plugstack.conf"
cat >"$C/slurm.conf" <<CONF
ClusterName=weldtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$C/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$C/state
SlurmdSpoolDir=$C/spool
SlurmctldPidFile=$C/slurmctld.pid
SlurmdPidFile=$C/slurmd.pid
SlurmctldLogFile=$C/log/slurmctld.log
SlurmdLogFile=$C/log/slurmd.log
PlugStackConfig=$C/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=weld Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$C/slurm.conf"
# the log tail that says why the cluster did not come up
why() { tail -n 3 "$C"/log/*.log "$C/munge/munged.log" 2>/dev/null | sed 's/^/#   /'; }

munged -f --key-file="$C/munge/munge.key" --socket="$C/munge/munge.sock" \
	--pid-file="$C/munge/munged.pid" --log-file="$C/munge/munged.log" \
	--seed-file="$C/munge/munged.seed" 2>"$C/log/munged.err" ||
	{ why; give_up "a Slurm job array runs the parts (munged did not start: $(cat "$C/log/munged.err"))"; }
slurmctld -f "$C/slurm.conf" -i 2>"$C/log/slurmctld.err" ||
	{ why; give_up "a Slurm job array runs the parts (slurmctld did not start)"; }
slurmd -f "$C/slurm.conf" -N "$node" 2>"$C/log/slurmd.err" ||
	{ why; give_up "a Slurm job array runs the parts (slurmd did not start)"; }
up=false
for _ in $(seq 1 30); do
	if sinfo -h -N -o '%T' 2>/dev/null | grep -qx idle; then up=true; break; fi
	sleep 1
done
$up || { why; give_up "a Slurm job array runs the parts (the node did not become idle in 30 s)"; }
ok "a one-node Slurm cluster runs on localhost (port $port)"

G="--layers 2 --hidden 64 --inter 128 --vocab 100"
"$MKMODEL" "$T/base" $G >/dev/null
for s in 1 2; do "$MKMODEL" "$T/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
MERGE="ties --base $T/base $T/ft1 $T/ft2 --density 0.3 --scope model --shard-size 40K"
"$WELD" $MERGE -q -o "$T/one"

# array ARRAY N: the merge as a job array (--part auto), weld join as a job
# that runs once the array has succeeded; waits for the join
array() {
	cat >"$T/merge.sbatch" <<JOB
#!/bin/sh
#SBATCH --job-name=weld-merge
#SBATCH --output=$C/out/merge-%A_%a.txt
exec "$WELD" $MERGE -q -j 1 -o "$T/out$2" --part auto
JOB
	cat >"$T/join.sbatch" <<JOB
#!/bin/sh
#SBATCH --job-name=weld-join
#SBATCH --output=$C/out/join-%j.txt
exec "$WELD" join -q -o "$T/out$2" "$T/out$2".part-*-of-$2
JOB
	_id=$(sbatch --parsable --array="$1" "$T/merge.sbatch") || return 1
	_id=$(sbatch --parsable --dependency=afterok:"$_id" "$T/join.sbatch") || return 1
	wait_job "$_id"
}

# wait_job ID: until job ID ends (sbatch --wait polls every few seconds);
# fails if it did not complete, or can never run
wait_job() {
	for _ in $(seq 1 600); do
		_s=$(scontrol show job "$1" -o 2>/dev/null)
		case $_s in
		*JobState=COMPLETED*) return 0 ;;
		*JobState=PENDING*Reason=DependencyNeverSatisfied*)
			scancel "$1"
			return 1 ;;
		*JobState=PENDING* | *JobState=RUNNING* | *JobState=CONFIGURING* | *JobState=COMPLETING*) ;;
		*) return 1 ;;
		esac
		sleep 0.2
	done
	return 1
}

# same A B: A and B hold the same files with the same bytes
same() {
	[ "$(cd "$1" && ls)" = "$(cd "$2" && ls)" ] || return 1
	for f in "$1"/*; do cmp "$f" "$2/$(basename "$f")" || return 1; done
}

# ARRAY/N: 0-based, 1-based, and with a step (--part auto reads
# SLURM_ARRAY_TASK_MIN and _STEP)
for spec in ${SPECS:-0-2/3 1-4/4 10-14:2/3}; do
	set -- "${spec%/*}" "${spec#*/}"
	t0=$(date +%s)
	if array "$1" "$2" && same "$T/one" "$T/out$2"; then
		ok "sbatch --array=$1 (--part auto), then weld join: cmp-identical to the one-machine merge ($(($(date +%s) - t0)) s)"
	else
		cat "$C"/out/*.txt 2>/dev/null | sed 's/^/#   /' | tail -n 20
		not_ok "sbatch --array=$1 (--part auto), then weld join: cmp-identical to the one-machine merge"
	fi
	expect "weld verify of the output joined under Slurm" "$WELD" verify "$T/out$2"
	rm -rf "$T/out$2"
done
summary
