#!/usr/bin/env bash
# Build the esp32like MicroPython unix variant (tools/micropython/esp32like) into OUT/micropython.
#   SRC: the MicroPython v1.28.0 source, as a .tar.gz (../shared/vendor/...) or an unpacked tree. When SRC is
#        absent, the pinned tag is cloned with the submodules the unix port needs.
# Needs gcc-multilib (make system-deps installs it). Takes ~30 s on 2 cores; `make mp-esp32` caches it.
set -euo pipefail
SRC=$1
OUT=$(realpath -m "$2")
TAG=v1.28.0
HERE=$(cd "$(dirname "$0")" && pwd)
TREE=$OUT/src

mkdir -p "$OUT"
if [ ! -f "$TREE/.unpacked" ]; then
  rm -rf "$TREE"
  mkdir -p "$TREE"
  if [ -f "$SRC" ]; then
    tar -xzf "$SRC" -C "$TREE" --strip-components=1
  elif [ -d "$SRC" ]; then
    cp -a "$SRC"/. "$TREE"/
  else
    echo "MICROPYTHON_SRC=$SRC not found: cloning micropython $TAG instead" >&2
    git clone -q --depth 1 -b "$TAG" https://github.com/micropython/micropython "$TREE"
    git -C "$TREE" submodule update -q --init --depth 1 lib/mbedtls lib/micropython-lib
  fi
  grep -q "define MICROPY_VERSION_MINOR 28$" "$TREE/py/mpconfig.h" || {
    echo "MICROPYTHON_SRC is not MicroPython v1.28.x (py/mpconfig.h)" >&2; exit 1; }
  touch "$TREE/.unpacked"
fi

# The version header comes from `git describe`: stop git from finding the repository this build sits in.
export GIT_CEILING_DIRECTORIES=$OUT
make -s -C "$TREE/mpy-cross" -j2 >/dev/null
make -s -C "$TREE/ports/unix" VARIANT_DIR="$HERE/esp32like" BUILD="$OUT/obj" -j2 >/dev/null
cp "$OUT/obj/micropython" "$OUT/micropython"
"$OUT/micropython" -c "import sys; assert sys.maxsize == 2**31 - 1, 'not a 32-bit build'; print('esp32like micropython:', sys.implementation._build, sys.version)"
