#!/usr/bin/env bash
# Triton's perf_analyzer (PyPI perf-analyzer) is built against glibc 2.38, newer than
# Debian 12's: give it a Debian 13 root of its own (debootstrap) and run it there with chroot.
# The root shares the host's network, so it reaches servers on 127.0.0.1.
#
#   bench/triton_tools/make_root.sh ROOT    # idempotent; needs root; about 5 minutes
#   bench/triton_tools/perf_analyzer ...    # then: perf_analyzer's own arguments
set -euo pipefail
root=$(realpath -m "${1:?usage: make_root.sh ROOT}")
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -x "$root/opt/perf-analyzer/bin/perf_analyzer" ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "make_root.sh: debootstrap and chroot need root" >&2; exit 1; fi
command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
if [ ! -x "$root/usr/bin/python3" ]; then
  rm -rf "$root.partial"
  debootstrap --variant=minbase --include=python3,python3-venv trixie "$root.partial" "$mirror"
  mv "$root.partial" "$root"
fi
# The wheel is fetched by the host's pip (its certificates and index settings), for the root's
# Python 3.13 and glibc 2.38, and installed offline inside the root.
wheels="$root/tmp/wheels"
mkdir -p "$wheels"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.13 \
  --platform manylinux_2_38_x86_64 --dest "$wheels" "perf-analyzer==${PERF_ANALYZER_VERSION:-2.60.0}"
chroot "$root" /bin/sh -c \
  'python3 -m venv /opt/perf-analyzer && /opt/perf-analyzer/bin/pip install --quiet --no-index \
   --find-links /tmp/wheels perf-analyzer'
echo "perf_analyzer is ready in $root"
