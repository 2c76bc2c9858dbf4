#!/usr/bin/env bash
# One queued dismi configuration per Slurm array task, on any number of machines that share nothing but
# a git remote and a DVC remote (README, "Beyond one machine").
#
#   sbatch --array=0-$(( $(grep -c . runs.txt) - 1 )) docs/runners/slurm_array.sh <git-url> <commit> runs.txt
#
# runs.txt: one experiment per line, its name and its -S settings, e.g.
#   lambda-0.1-seed0 seed=0 lambda_adv=0.1
#   lambda-0.1-seed1 seed=1 lambda_adv=0.1
# Each task clones <git-url> at <commit> into node-local scratch, fetches the DVC remote's run-cache (the
# run history of every task that pushed before: each stage configuration any machine trained), runs its
# experiment with `dvc exp run --pull --allow-missing` (what an earlier run already produced, in the
# commit's dvc.lock or in that history, is pulled from the DVC remote, not recomputed), then
# `dvc exp push origin <name>` and `python -m stages push-run-cache`: the experiment's git ref to the git
# remote, its outputs and its run history (with every file it names) to the DVC remote. Anyone then runs `dvc exp pull origin <name>` (or
# `dvc exp show -A` after `git fetch origin 'refs/exps/*:refs/exps/*'`) and `python -m stages results`.
# Checkpoints live outside the clone, in $DISMI_CHECKPOINTS (default ~/.cache/dismi/checkpoints): a
# task killed or pre-empted and requeued (`#SBATCH --requeue`, `scontrol requeue`) starts from a fresh
# clone and resumes its training stage where it stopped. Point DISMI_CHECKPOINTS at a filesystem every
# node sees (the home directory usually is) so that a requeue on another node resumes too.
# The Python environment: DISMI_ACTIVATE=<path to an activate script>, else the one already active.
#SBATCH --job-name=dismi
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=24:00:00
#SBATCH --requeue
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: slurm_array.sh <git-url> <commit> <runs-file>  (SLURM_ARRAY_TASK_ID picks the line)" >&2
  exit 2
fi
url=$1 rev=$2 runs=$(realpath "$3")
task=${SLURM_ARRAY_TASK_ID:?run it as a Slurm array task, or set SLURM_ARRAY_TASK_ID}
line=$(grep . "$runs" | sed -n "$((task + 1))p")
if [ -z "$line" ]; then
  echo "$runs has no line $((task + 1)) for array task $task" >&2
  exit 2
fi
read -r name settings <<<"$line"
if [ -n "${DISMI_ACTIVATE:-}" ]; then . "$DISMI_ACTIVATE"; fi

work=${DISMI_SCRATCH:-${TMPDIR:-/tmp}}/dismi-${SLURM_JOB_ID:-local}-$task
rm -rf "$work"  # a requeued task starts clean; its checkpoints are elsewhere (see above)
git clone -q "$url" "$work"
cd "$work"
git checkout -q "$rev"
args=()
for s in $settings; do args+=(-S "$s"); done
# The run history only: --type metrics fetches no data (dismi's metrics are in git, not in the DVC cache);
# `--pull` below then pulls the outputs of the stages it restores.
dvc fetch -q --run-cache --type metrics
dvc exp run --pull --allow-missing -n "$name" "${args[@]}"
dvc exp push -f origin "$name"  # -f: a rerun of the task replaces its earlier push
# The run history with every file it names: `dvc exp push --run-cache` leaves out the cache: false
# outputs (dvclive metrics, kept in git), and without them no other machine can restore a stage.
python -m stages push-run-cache
echo "pushed experiment $name"
