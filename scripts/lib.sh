# Shared set-up for scripts/serve and scripts/test: a project virtualenv and Debian packages.
# Sourced, not run. Installs only what is missing, so a second run starts at once.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
    echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

apt_install() {  # apt_install pkg...: install Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing Debian packages: ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

find_python() {  # a Python >= 3.11
  for py in python3 python3.13 python3.12 python3.11; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0; fi
  done
  return 1
}

ensure_venv() {  # ensure_venv [extra]: .venv with the project (and extras) installed
  local extra="${1:-}" py stamp spec
  py=$(find_python) || { apt_install python3 python3-venv; py=$(find_python); } || {
    echo "Python 3.11 or newer is required" >&2; exit 1; }
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $py" >&2
    "$py" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$py" -m venv .venv; }
  fi
  spec="."; [ -n "$extra" ] && spec=".[$extra]"
  stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extra:-base}"
  if [ ! -f "$stamp" ]; then
    echo "==> installing Python packages ($spec) into .venv" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec" >&2
    touch "$stamp"
  fi
}
