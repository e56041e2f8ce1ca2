#!/usr/bin/env bash
# One-command, idempotent set-up of the pip environment (no ROS installation needed):
#   1. create .venv if missing;
#   2. install the pinned requirements (skipped while requirements/constraints are unchanged);
#   3. generate the ROS interfaces from msg/ and action/ with the CMakeLists.txt colcon uses, build them with
#      the pip-installed ROS generators + system cmake/gcc, and install them into the venv
#      (skipped while msg/, action/, CMakeLists.txt, package.xml and the build helpers are unchanged);
#   4. `pip install .` decaf_ros itself into the same site-packages/decaf_ros folder (every run).
#
# Environment: PYTHON (interpreter for a new venv, default python3), DECAF_VENV (default .venv),
# DECAF_FORCE_REBUILD=1 (ignore the stamps).
# Anything that looks ROS packages up at run time needs AMENT_PREFIX_PATH=<venv> (see README).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DECAF_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
BUILD_DIR="$ROOT/build/cmake"
REQ_STAMP="$VENV/.decaf-requirements.sha256"
MSG_STAMP="$VENV/.decaf-interfaces.sha256"
START=$SECONDS

# The ROS wheels re-exec Python once with LD_LIBRARY_PATH set, guarded by this variable. A guard
# inherited from another process (or another venv) would skip that step and the libraries
# would not load.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
# The build must see this venv's ROS packages only, never a sourced ROS distribution.
export AMENT_PREFIX_PATH="$VENV"
unset CMAKE_PREFIX_PATH

log() { printf '[setup_env] %s\n' "$*"; }

# Hash of file names (relative to the tree) and contents, so renames count as changes too.
hash_files() {
  local file
  for file in "$@"; do
    printf '%s\n' "${file#"$ROOT"/}"
    cat "$file"
  done | sha256sum | cut -d' ' -f1
}

stamp_matches() { [[ -z "${DECAF_FORCE_REBUILD:-}" && -f "$1" && "$(cat "$1")" == "$2" ]]; }

site_packages() { "$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

ensure_venv() {
  if [[ ! -x "$PY" ]]; then
    log "creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
}

install_requirements() {
  local want
  want="$(hash_files "$ROOT/requirements.txt" "$ROOT/constraints.txt")-$("$PY" -V 2>&1)"
  if stamp_matches "$REQ_STAMP" "$want"; then
    log "requirements unchanged"
    return
  fi
  log "installing pinned requirements (first run: ~3 GB of wheels)"
  (cd "$ROOT" && "$PY" -m pip install -q -r requirements.txt)
  echo "$want" >"$REQ_STAMP"
}

# Start from a clean build folder when it was configured for another source tree or venv.
reset_stale_build_dir() {
  local cache="$BUILD_DIR/CMakeCache.txt"
  [[ -f "$cache" ]] || return 0
  if ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$ROOT" "$cache" \
      || ! grep -qx "CMAKE_INSTALL_PREFIX:PATH=$VENV" "$cache"; then
    log "discarding $BUILD_DIR (configured elsewhere)"
    rm -rf "$BUILD_DIR"
  fi
}

build_interfaces() {
  local site want wheel_args
  local -a wheel_cmake_args
  site="$(site_packages)"
  want="$(hash_files "$ROOT"/msg/*.msg "$ROOT"/action/*.action "$ROOT/CMakeLists.txt" "$ROOT/package.xml" \
    "$ROOT/scripts/pip_wheels_fixup.cmake" "$ROOT/scripts/pip_wheels_cmake_args.py" \
    "$ROOT/scripts/setup_env.sh" "$REQ_STAMP")"
  if stamp_matches "$MSG_STAMP" "$want" && [[ -f "$site/decaf_ros/msg/__init__.py" && -f "$site/decaf_ros/action/__init__.py" ]]; then
    log "interfaces unchanged"
    return
  fi
  log "building interfaces from msg/ and action/"
  # Interpreter, header-path fixup: shared with the colcon build test.
  wheel_args="$("$PY" "$ROOT/scripts/pip_wheels_cmake_args.py")"
  mapfile -t wheel_cmake_args <<<"$wheel_args"
  reset_stale_build_dir
  cmake -S "$ROOT" -B "$BUILD_DIR" -Wno-dev \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DCMAKE_PREFIX_PATH="$VENV" \
    -DBUILD_TESTING=OFF \
    "${wheel_cmake_args[@]}" >"$ROOT/build/cmake-configure.log" 2>&1 \
    || { cat "$ROOT/build/cmake-configure.log"; exit 1; }
  cmake --build "$BUILD_DIR" --parallel "$(nproc)" >"$ROOT/build/cmake-build.log" 2>&1 \
    || { cat "$ROOT/build/cmake-build.log"; exit 1; }
  # Drop generated modules of interfaces that no longer exist before installing the new set.
  rm -rf "$site/decaf_ros/msg" "$site/decaf_ros/action"
  cmake --install "$BUILD_DIR" >"$ROOT/build/cmake-install.log" 2>&1 \
    || { cat "$ROOT/build/cmake-install.log"; exit 1; }
  # The CMake install leaves a decaf_ros egg-info (colcon style). pip would take it for an
  # installed decaf_ros and, uninstalling it by top-level name, delete the generated msg/.
  rm -rf "$site"/decaf_ros-*.egg-info
  echo "$want" >"$MSG_STAMP"
}

install_package() {
  log "installing decaf_ros"
  # setuptools reuses build/lib between runs: stale copies of deleted modules would be packaged.
  rm -rf "$ROOT/build/lib" "$ROOT"/build/bdist.* "$ROOT/decaf_ros.egg-info"
  # Not editable: editable installs skip data_files (package.xml, launch/, lib/decaf_ros/...).
  (cd "$ROOT" && "$PY" -m pip install -q --no-deps --no-build-isolation --no-warn-script-location .)
}

# Import from a neutral folder, so the source tree cannot shadow the installed package.
check_import() {
  (cd / && "$PY" -c 'from decaf_ros.msg import Status, Target, TargetArray; from decaf_ros.action import Ground') \
    || { log "decaf_ros.msg / decaf_ros.action do not import from $VENV"; exit 1; }
}

main() {
  mkdir -p "$ROOT/build"
  # Serialise concurrent runs on one tree: they share the venv and the build folder.
  exec 9>"$ROOT/build/.setup_env.lock"
  flock 9
  ensure_venv
  install_requirements
  build_interfaces
  install_package
  check_import
  log "ready in $((SECONDS - START)) s: $VENV (export AMENT_PREFIX_PATH=$VENV for package look-ups)"
}

main "$@"
