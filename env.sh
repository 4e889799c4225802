# Source this file to get a shell that can run rlt's nodes and tools:
#   . ./env.sh
# It activates the venv, points ament at the venv's ROS 2 wheels, sources the colcon install
# space, and makes ROS 2 discovery stay on this machine unless you chose otherwise.
# On a real robot spread over several machines, set ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET (and a
# shared ROS_DOMAIN_ID) before sourcing.

if [ -n "${BASH_SOURCE:-}" ]; then _rlt_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
elif [ -n "${ZSH_VERSION:-}" ]; then _rlt_root=$(cd "$(dirname "${(%):-%x}")" && pwd)
else _rlt_root=${RLT_ROOT:-$(pwd)}
fi
export RLT_ROOT=$_rlt_root
unset _rlt_root

if [ ! -f "$RLT_ROOT/install/setup.sh" ]; then
  echo "rlt: workspace not built yet; run $RLT_ROOT/tools/setup.sh (or ./rlt setup)" >&2
  return 1 2>/dev/null || exit 1
fi

# The scripts sourced below are not written for `set -u`: lift it while they run.
case $- in *u*) _rlt_nounset=1; set +u ;; *) _rlt_nounset= ;; esac
# shellcheck disable=SC1091
. "${RLT_VENV:-$RLT_ROOT/.venv}/bin/activate"
export AMENT_PREFIX_PATH=$VIRTUAL_ENV
unset COLCON_PREFIX_PATH
COLCON_CURRENT_PREFIX=$RLT_ROOT/install . "$RLT_ROOT/install/setup.sh"
[ -n "$_rlt_nounset" ] && set -u
unset _rlt_nounset
# The command-line tools (demo recorder, trainers, benchmarks) by name; nodes run by package.
for _rlt_pkg in rlt_sim rlt_train; do PATH=$RLT_ROOT/install/$_rlt_pkg/lib/$_rlt_pkg:$PATH; done
unset _rlt_pkg
export PATH

export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export MUJOCO_GL=${MUJOCO_GL:-egl}
export PYTHONUNBUFFERED=1
