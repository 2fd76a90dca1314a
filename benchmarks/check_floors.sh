#!/usr/bin/env bash
# Checks that the dependency floors in pyproject.toml are honest: builds a virtual environment holding exactly the
# declared minimum of every dependency (the `>=X` of each line of `dependencies = [...]`, installed as `==X`),
# installs genlab into it without dependencies, and runs the test suite against it.
#
#   bash benchmarks/check_floors.sh FOLDER [pytest arguments...]
#
# FOLDER is created (python -m venv) unless it already holds a virtual environment, which is then reused with the
# floors reinstalled over it. Other pytest arguments replace the default `-q -p no:cacheprovider`.
#
# Environment:
#   PYTHON            interpreter for the venv (default python3)
#   FLOORS_PIP_ARGS   extra arguments for the pip install of the floors, e.g. `--extra-index-url URL` of an
#                     index with CPU-only torch builds (PyTorch publishes one), to skip the CUDA wheels
#   FLOORS_DRY_RUN=1  print the pins and stop
#
# Without a CPU-only index, pip fetches the CUDA build of the floor torch from PyPI: about 0.8 GB for torch and
# about 2 GB more of nvidia-* wheels. The suite itself runs on the CPU in 10-15 minutes on 2 cores.
# Not part of CI: run it by hand when a floor moves or a new API of a dependency is used.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
venv=$1
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}

# "name[extras]>=X,<Y"  ->  "name[extras]==X"; a dependency without a floor is an error (nothing to check).
mapfile -t pins < <("$python" - "$repo/pyproject.toml" <<'EOF'
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M)
if block is None:
    sys.exit("check_floors: no `dependencies = [...]` list in pyproject.toml")
code = "\n".join(line.split("#", 1)[0] for line in block.group(1).splitlines())  # comments may quote too
for requirement in re.findall(r'"([^"]+)"', code):
    match = re.match(r"\s*([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)\s*(.*)", requirement)
    name, spec = match.group(1), match.group(2)
    floor = re.search(r">=\s*([0-9][^,;\s]*)", spec)
    if floor is None:
        sys.exit(f"check_floors: {requirement!r} declares no `>=` floor")
    print(f"{name}=={floor.group(1)}")
EOF
)
echo "check_floors: floors from $repo/pyproject.toml:"
printf '  %s\n' "${pins[@]}"
if [[ "${FLOORS_DRY_RUN:-}" == 1 ]]; then
    exit 0
fi

if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" && -n "$(ls -A "$venv")" ]]; then
    echo "check_floors: $venv exists and is not a virtual environment; give a new folder" >&2
    exit 2
fi
[[ -f "$venv/pyvenv.cfg" ]] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip)
# shellcheck disable=SC2086  # FLOORS_PIP_ARGS is a list of pip arguments
"${pip[@]}" install --progress-bar off ${FLOORS_PIP_ARGS:-} "${pins[@]}" pytest
"${pip[@]}" install --progress-bar off --no-deps -e "$repo"
"${pip[@]}" check || echo "check_floors: pip check reports the conflicts above (the suite decides)" >&2

echo "check_floors: installed:"
"$venv/bin/python" - <<'EOF'
from importlib.metadata import version
for name in ("torch", "torchvision", "lightning", "torchmetrics", "torch-fidelity", "tensorboard", "pillow",
             "numpy", "scipy", "matplotlib", "jsonargparse", "pytest"):
    print(f"  {name} {version(name)}")
EOF

cd "$repo"
if [[ $# -eq 0 ]]; then
    set -- -q -p no:cacheprovider
fi
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} exec "$venv/bin/python" -m pytest "$@"
