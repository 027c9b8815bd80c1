# login shells in the SLURM test cluster: use the hpcpar venv
export VIRTUAL_ENV=/opt/venv
export PATH=/opt/venv/bin:$PATH
export HPCPAR_RUNS_DIR=${HPCPAR_RUNS_DIR:-/shared/runs}
