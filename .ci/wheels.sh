#!/usr/bin/env bash
# Compiled wheels for every supported CPython, each built from the sdist by that interpreter, repaired to a
# manylinux tag with auditwheel and smoke-tested in a fresh venv of that Python (tests/wheel_smoke.py:
# aiows.COMPILED, and a real server answers a real client). The full test suite then runs, from the unpacked
# sdist, against the wheels of the oldest and the newest Python.
#
# The oldest Python builds with the lowest build requirements (.ci/lowest-build-versions.txt: setuptools, mypy,
# and the websockets, pydantic and orjson mypyc type-checks against) and tests against the lowest versions of the
# dependencies and the test and extras' packages that pyproject.toml allows (.ci/lowest-versions.txt); the
# newest, with the latest.
#
#   .ci/wheels.sh SDIST OUTDIR [PREBUILT_WHEEL...]
#
# A PREBUILT_WHEEL (e.g. the cp311 wheel `python -m build` made from the same sdist) is repaired and tested
# instead of building that Python's wheel again. Needs auditwheel and patchelf on PATH; finds the interpreters
# in $(pyenv root)/versions.
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

PYTHONS=(3.10 3.11 3.12 3.13)      # requires-python = ">=3.10"; keep the classifiers in pyproject.toml in step
SUITE_PYTHONS=(3.10 3.13)         # the oldest and the newest

# Known failures on Python 3.10, deselected there with the reason (each test runs on 3.11 and 3.13):
# - the fuzz test uses asyncio.Runner, which is new in Python 3.11.
DESELECT_3_10=(
  "tests/test_hostile.py::test_fuzzed_frames_get_a_reply_or_an_error_frame_and_the_connection_stays"
)

sdist=$(realpath "$1")
out=$(realpath -m "$2")
shift 2
prebuilt=("$@")
ci=$(cd "$(dirname "$0")" && pwd)
lowest="$ci/lowest-versions.txt"
lowest_build="$ci/lowest-build-versions.txt"
pyenv_root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The suite and the smoke script run from the unpacked sdist: what the sdist ships must be enough.
tar -xzf "$sdist" -C "$work"
src=$(echo "$work"/aiows-*/)
mkdir "$work/elsewhere"  # a directory with no aiows source in it, for the smoke runs

interpreter() {  # the newest patch release of Python $1 under pyenv
  local dir
  dir=$(find "$pyenv_root/versions" -maxdepth 1 -name "$1.*" | grep -E "/$1\.[0-9]+$" | sort -V | tail -n 1)
  if [ -z "$dir" ]; then
    echo "Python $1 not found in $pyenv_root/versions" >&2
    return 1
  fi
  echo "$dir/bin/python"
}

tags=()
for minor in "${PYTHONS[@]}"; do
  py=$(interpreter "$minor")
  tag=cp${minor/./}
  echo "== CPython $minor ($("$py" -c 'import platform; print(platform.python_version())')): wheel"
  venv="$work/venv-$minor"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  built=""
  for wheel in "${prebuilt[@]}"; do
    case "$(basename "$wheel")" in *-"$tag"-"$tag"-linux_*.whl) built=$wheel ;; esac
  done
  if [ -n "$built" ]; then
    echo "built by python -m build from the same sdist: $(basename "$built")"
  else
    constraints=()
    if [ "$minor" = "${PYTHONS[0]}" ]; then
      # Since pip 26.2 PIP_CONSTRAINT no longer reaches the isolated build environment; build constraints do.
      constraints=(env "PIP_BUILD_CONSTRAINT=$lowest_build")
    fi
    start=$SECONDS
    log="$work/build-$minor.log"
    "${constraints[@]}" nice -n 10 "$venv/bin/python" -m pip wheel -v --no-deps --wheel-dir "$work/built-$minor" \
      "$sdist" >"$log" 2>&1 || { tail -n 60 "$log"; exit 1; }
    built=$(echo "$work/built-$minor"/*.whl)
    echo "built $(basename "$built") in $((SECONDS - start)) s"
    if [ "$minor" = "${PYTHONS[0]}" ]; then  # the build environment had exactly the lowest build requirements
      installed=" $(grep -h "Successfully installed" "$log" | sed 's/.*Successfully installed//' | tr '\n' ' ') "
      for pin in $(grep -v '^#' "$lowest_build" | sed 's/==/-/'); do
        [[ "$installed" == *" $pin "* ]] || { echo "the build environment lacks $pin: it had$installed" >&2; exit 1; }
      done
      echo "build requirements: $(grep -v '^#' "$lowest_build" | tr '\n' ' ')"
    fi
  fi
  auditwheel repair --wheel-dir "$work/repaired-$minor" "$built" >/dev/null 2>&1 || {
    auditwheel repair --wheel-dir "$work/repaired-$minor" "$built"
    exit 1
  }
  wheel=$(echo "$work/repaired-$minor"/*.whl)
  case "$(basename "$wheel")" in
    *manylinux*) ;;
    *) echo "auditwheel gave no manylinux tag: $(basename "$wheel")" >&2; exit 1 ;;
  esac
  cp "$wheel" "$out/"
  wheel="$out/$(basename "$wheel")"
  tags+=("$(basename "$wheel" .whl | cut -d- -f3-)")
  echo "repaired: $(basename "$wheel")"

  echo "== CPython $minor: smoke test in a fresh venv"
  "$venv/bin/pip" install -q "$wheel"
  (cd "$work/elsewhere" && "$venv/bin/python" "$src/tests/wheel_smoke.py")

  if [[ " ${SUITE_PYTHONS[*]} " == *" $minor "* ]]; then
    echo "== CPython $minor: the test suite against this wheel, from the unpacked sdist"
    options=()
    if [ "$minor" = "${PYTHONS[0]}" ]; then
      "$venv/bin/pip" install -q -c "$lowest" "$wheel[test]"
      echo "lowest versions: $(grep -v '^#' "$lowest" | tr '\n' ' ')"
      for test in "${DESELECT_3_10[@]}"; do options+=(--deselect "$test"); done
    else
      "$venv/bin/pip" install -q "$wheel[test]"
    fi
    (cd "$src" && AIOWS_EXPECT_COMPILED=1 "$venv/bin/pytest" -q -p no:cacheprovider "${options[@]}")
    if [ "$minor" = "${PYTHONS[0]}" ]; then  # pytest-benchmark's lowest version, on the hot-path benchmarks
      (cd "$src/benchmarks" && "$venv/bin/python" -m pytest test_hotpath.py -q -p no:cacheprovider \
        --benchmark-max-time=0.05 --benchmark-min-rounds=20 | tail -n 1)
    fi
  fi
done

echo "== wheels (tags: ${tags[*]})"
ls "$out"
