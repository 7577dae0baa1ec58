# Sourced from the repository root (`. scripts/venv.sh`) by the scripts that
# run Python: sets up (scripts/setup.sh) and puts the project's virtual
# environment first on PATH, so python3, pip and pytest are the environment's.
VIRTUAL_ENV=$(scripts/setup.sh)
export VIRTUAL_ENV PATH="$VIRTUAL_ENV/bin:$PATH"
