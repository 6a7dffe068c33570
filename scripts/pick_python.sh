#!/bin/sh
# The interpreter the Makefile builds its venvs with.
#
#   scripts/pick_python.sh [--any] "3.11 3.12 3.13" CANDIDATE...
#
# Prints "EXECUTABLE X.Y" for the first CANDIDATE (a command on PATH or a path) that runs, is
# CPython on Linux x86_64 with the venv module, and whose version is one of the list (the lock's
# `# python-versions:` line). --any: any version (make test-latest's unlocked venv). A candidate
# that is on PATH but does not run (a pyenv shim for a version pyenv does not select) is skipped.
# None fits: what each candidate is, the supported versions and how to name one go to stderr,
# and the exit status is 1.
any=0
if [ "${1:-}" = "--any" ]; then any=1; shift; fi
if [ $# -lt 2 ]; then
  echo "usage: pick_python.sh [--any] \"X.Y X.Y ...\" CANDIDATE..." >&2
  exit 2
fi
supported="$1"; shift
if [ "$any" = 0 ] && [ -z "$supported" ]; then
  echo "requirements.lock names no Python versions (its \`# python-versions:\` line): make lock" >&2
  exit 1
fi
probe='import platform, sys
try:
    import ensurepip, venv
    ok = "venv"
except ImportError:
    ok = "no-venv"
print(platform.python_implementation(), "%d.%d" % sys.version_info[:2], platform.system(),
      platform.machine(), ok, sys.executable)'
nl='
'
tried=""
for c in "$@"; do
  if ! command -v "$c" >/dev/null 2>&1; then
    tried="$tried
  $c: not found"
    continue
  fi
  if ! out=$("$c" -c "$probe" 2>/dev/null) || [ -z "$out" ]; then
    why=$("$c" -c "$probe" 2>&1)
    tried="$tried
  $c: is on PATH but does not run (${why%%"$nl"*})"
    continue
  fi
  # the probe's line (the last one), six fields, the last one (the path) taking the rest
  read -r impl ver sys_ mach venv exe <<EOF
${out##*"$nl"}
EOF
  what="$impl $ver on $sys_ $mach ($exe)"
  if [ "$impl $sys_ $mach" != "CPython Linux x86_64" ]; then
    tried="$tried
  $c: $what: not CPython on Linux x86_64"
  elif [ "$venv" != "venv" ]; then
    tried="$tried
  $c: $what: has no venv module (Debian, Ubuntu: apt install python$ver-venv)"
  elif [ "$any" = 1 ] || case " $supported " in *" $ver "*) true ;; *) false ;; esac; then
    echo "$exe $ver"
    exit 0
  else
    tried="$tried
  $c: $what: a version the lock does not cover"
  fi
done
versions=""
for v in $supported; do versions="${versions:+$versions, }$v"; done
{
  if [ "$any" = 1 ]; then
    echo "No interpreter that runs and can make a venv (CPython on Linux x86_64)."
  else
    echo "No interpreter for the lock: requirements.lock is for CPython $versions on Linux x86_64."
  fi
  echo "Tried:$tried"
  echo "Install one of them (with its venv module), or name one that is installed elsewhere:"
  echo "  make test PYTHON=python${supported##* }   (a command on PATH, or a path:"
  echo "  make test PYTHON=/usr/local/bin/python${supported##* })"
  [ "$any" = 1 ] || echo "make test-latest builds an unlocked venv with any CPython."
} >&2
exit 1
