#!/usr/bin/env bash
# Idempotent set-up of the rlt workspace on Debian 12:
#   1. Debian packages (compiler, CMake, Mesa EGL for offscreen MuJoCo rendering),
#   2. a venv with the pinned Python dependencies (requirements.txt),
#   3. the ROS 2 wheels' exported CMake paths rewritten for this machine,
#   4. `colcon build` of the workspace.
# Each step records a stamp and is skipped while its inputs are unchanged.
# Environment: RLT_VENV (default <root>/.venv), RLT_PYTHON (default python3, must be 3.11).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${RLT_VENV:-$root/.venv}
python=${RLT_PYTHON:-python3}
say() { printf '[setup] %s\n' "$*"; }

# --- 1. Debian packages --------------------------------------------------------------
debs=(cmake g++ make git libegl1 libegl-mesa0 libgl1-mesa-dri iproute2 util-linux)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then missing+=(python3-venv); fi
if ! "$python" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1; then
  missing+=(python3-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- 2. venv with pinned wheels --------------------------------------------------------
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$pyver" != "3.11" ]; then
  echo "[setup] error: the ROS 2 Kilted wheels need Python 3.11; $python is $pyver (set RLT_PYTHON)" >&2
  exit 1
fi
req_stamp=$(cat "$root/requirements.txt" "$root/tools/setup.sh" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.rlt-requirements" 2>/dev/null)" != "$req_stamp" ]; then
  say "creating venv $venv and installing pinned dependencies (a few minutes on first use)"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q -r "$root/requirements.txt"
  # The wheels' exported CMake files name the include paths of the machine that built them.
  inc=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  { grep -rlE '/opt/python/cp311-cp311/' "$venv" --include='*.cmake' || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$inc#g" \
           -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages#$site#g" "$f"
  done
  if grep -rqE '/opt/python/' "$venv" --include='*.cmake'; then
    echo "[setup] error: unrepaired build-machine paths remain in the wheels' CMake files" >&2
    exit 1
  fi
  echo "$req_stamp" > "$venv/.rlt-requirements"
  rm -f "$root/build/.rlt-sources"   # new wheels: rebuild the workspace
fi

# --- 3. colcon build -------------------------------------------------------------------
# Rebuild when a package's build inputs change: file names anywhere (a new module must be
# linked into the symlink install), contents of everything but plain Python modules (those
# are symlinked, so edits need no rebuild), plus setup.py and launch files.
cd "$root"
src_stamp=$(
  files=$(find src test colcon.meta -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort)
  {
    echo "$req_stamp"
    echo "$files"
    echo "$files" | grep -vE '\.py$' | xargs -r cat
    echo "$files" | grep -E '(^|/)setup\.py$|\.launch\.py$' | xargs -r cat
  } | sha256sum | cut -d' ' -f1
)
if [ "$(cat build/.rlt-sources 2>/dev/null)" != "$src_stamp" ]; then
  say "colcon build"
  (
    # shellcheck disable=SC1091
    . "$venv/bin/activate"
    export AMENT_PREFIX_PATH=$VIRTUAL_ENV
    unset COLCON_PREFIX_PATH
    colcon --log-base log build --symlink-install --base-paths src test --event-handlers status-
  )
  echo "$src_stamp" > build/.rlt-sources
fi
say "ready"
