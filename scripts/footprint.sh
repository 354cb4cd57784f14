#!/usr/bin/env bash
# The device profile's footprint (docs/install.md): installed size, package count, `import edge_fer`,
# `edgefer --help` start-up and Recognizer("ferlite_int8") peak RSS on 640×480 frames, on x86_64 and on the
# emulated Raspberry Pi (scripts/arm64_pi.sh), and the size of [all] on x86_64.
#   bash scripts/footprint.sh [x86|arm64|all-size ...]   (default: x86 arm64 all-size); writes under $OUT (/tmp/footprint)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-/tmp/footprint}"
PY="$ROOT/.venv/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check --quiet)
AARCH64=(--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64
         --python-version 3.11 --implementation cp --only-binary=:all:)
mkdir -p "$OUT"

# the wheel, built from a copy of the tree (the build leaves build/ and *.egg-info beside the sources)
if ! ls "$OUT"/dist/edge_fer-*.whl >/dev/null 2>&1; then
  rm -rf "$OUT/src" && mkdir -p "$OUT/src" && cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/edge_fer" "$OUT/src/"
  find "$OUT/src" -name __pycache__ -prune -exec rm -rf {} +
  "${PIP[@]}" wheel --no-deps -w "$OUT/dist" "$OUT/src"
fi
W="$(ls "$OUT"/dist/edge_fer-*.whl)"
# its base requirements with the markers evaluated for a platform_machine
reqs() {
  "$PY" - "$W" "$1" <<'EOF'
import sys, zipfile
from email.parser import Parser
from packaging.requirements import Requirement
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode())
env = {"platform_machine": sys.argv[2], "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
       "python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "extra": ""}
for r in map(Requirement, meta.get_all("Requires-Dist")):
    if r.marker is None or r.marker.evaluate(env):
        print(f"{r.name}{r.specifier}")
EOF
}
"$PY" -c "from PIL import Image; from skimage import data; Image.fromarray(data.astronaut()).resize((640, 480)).save('$OUT/frame.png')"
cat > "$OUT/rss.py" <<'EOF'
import resource, sys
import numpy as np
from PIL import Image
from edge_fer import Recognizer

frame = np.asarray(Image.open(sys.argv[3]).convert("RGB"))  # the astronaut photo resized to 640×480
rec = Recognizer("ferlite_int8", detector=sys.argv[2])
for _ in range(int(sys.argv[1])):
    rec.predict(frame)
print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
      f"cv2 imported: {'cv2' in sys.modules}")
EOF
best() {  # best of N wall-clock seconds of a command
  local n=$1; shift; local b=
  for _ in $(seq "$n"); do
    local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
    b=$(echo "$s $e ${b:-999}" | awk '{t=$2-$1; print (t<$3)?t:$3}')
  done
  printf '%.2f s' "$b"
}
report() {  # site folder, python → the table's numbers
  local site=$1 py=$2 runs=$3 frames=$4
  echo "installed size: $(du -sm "$site" | cut -f1) MB (edge_fer $(du -sm "$site/edge_fer" | cut -f1) MB)"
  echo "packages: $(ls -d "$site"/*.dist-info | wc -l)  ($(ls -d "$site"/*.dist-info | xargs -n1 basename | sed 's/-[0-9].*//' | tr '\n' ' '))"
  echo "import edge_fer: $(best "$runs" "$py" -c 'import edge_fer')"
  echo "edgefer --help: $(best "$runs" "$py" -c 'from edge_fer.cli import main; main()' --help)"
  echo "edgefer predict --help: $(best "$runs" "$py" -c 'from edge_fer.cli import main; main()' predict --help)"
  echo "Recognizer, $frames frames, blazeface: $("$py" "$OUT/rss.py" "$frames" blazeface "$OUT/frame.png")"
}

for what in "${@:-x86 arm64 all-size}"; do
  case $what in
    x86)
      rm -rf "$OUT/x86" && mkdir -p "$OUT/x86"
      mapfile -t R < <(reqs x86_64)
      "${PIP[@]}" install --target "$OUT/x86/site" -c "$ROOT/requirements.lock" "${R[@]}"
      "${PIP[@]}" install --no-deps --target "$OUT/x86/site" --upgrade "$W"
      "$PY" -m venv --without-pip "$OUT/x86/venv"
      printf '#!/bin/sh\nPYTHONPATH=%s exec %s "$@"\n' "$OUT/x86/site" "$OUT/x86/venv/bin/python" > "$OUT/x86/python"
      chmod +x "$OUT/x86/python"
      echo "== device profile, x86_64"; report "$OUT/x86/site" "$OUT/x86/python" 5 200
      echo "Recognizer, 200 frames, yunet: $("$OUT/x86/python" "$OUT/rss.py" 200 yunet "$OUT/frame.png")" ;;
    arm64)
      rm -rf "$OUT/pi" && mkdir -p "$OUT/pi"
      mapfile -t R < <(reqs aarch64)
      "${PIP[@]}" install --no-index --find-links "$ROOT/.venv/arm64-wheels" --target "$OUT/pi/site" "${AARCH64[@]}" \
        -c "$ROOT/requirements.lock" "${R[@]}" \
      || { "${PIP[@]}" download -d "$ROOT/.venv/arm64-wheels" "${AARCH64[@]}" -c "$ROOT/requirements.lock" "${R[@]}" &&
           "${PIP[@]}" install --no-index --find-links "$ROOT/.venv/arm64-wheels" --target "$OUT/pi/site" "${AARCH64[@]}" \
             -c "$ROOT/requirements.lock" "${R[@]}"; }
      "${PIP[@]}" install --no-index --no-deps --upgrade --target "$OUT/pi/site" "${AARCH64[@]}" "$W"
      sed "s|PYTHONPATH=/opt/site|PYTHONPATH=$OUT/pi/site|" "$ROOT/.venv/arm64-pi/python" > "$OUT/pi/python"
      chmod +x "$OUT/pi/python"
      echo "== device profile, arm64 (emulated Pi; times are qemu's)"; report "$OUT/pi/site" "$OUT/pi/python" 2 20 ;;
    all-size)
      # [all] on x86_64: the distributions pip would install for it, summed from their RECORD files in .venv
      "${PIP[@]}" install --dry-run --ignore-installed --report "$OUT/all.json" -c "$ROOT/requirements.lock" "$W[all]"
      "$PY" - "$OUT/all.json" <<'EOF'
import json, sys
from importlib.metadata import distribution, PackageNotFoundError
names = [i["metadata"]["name"] for i in json.load(open(sys.argv[1]))["install"]]
total, missing = 0, []
for n in names:
    try:
        total += sum((f.size or 0) for f in distribution(n).files or ())
    except PackageNotFoundError:
        missing.append(n)
print(f"== [all], x86_64: {len(names)} packages, {total / 1e6:.0f} MB (not in .venv, not counted: {missing})")
EOF
      ;;
  esac
done
