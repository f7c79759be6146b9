"""Run the in-process suite on the compiled and the pure build side by side; print the ratios.

    python benchmarks/compare.py            # about a minute
    python benchmarks/compare.py --quick    # a few seconds (CI smoke run)

The compiled side is the aiows installed in this interpreter; the pure side is
the same interpreter with ``PYTHONPATH`` pointing at a temporary copy of the
package's ``.py`` sources (no ``.so`` files), so both run the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: The benchmark the compiled-vs-pure target is about: decode + dispatch + 3 middlewares + validation + handler,
#: driven by the server's own (compiled) receive loop.
TARGET_BENCHMARK = "test_serve_loop[3]"
TARGET_RATIO = 1.5

#: The same work written by hand without the framework: what no build can go below.
FLOOR_BENCHMARK = "test_serve_loop_floor"

#: Only the work that is not aiows's (decode, validation, user middlewares and handler, encode): below any build.
EXTERNAL_BENCHMARK = "test_serve_loop_external"

#: Requests per ``test_serve_loop`` round (``test_hotpath.SERVE_BATCH``): its times are shown per request.
SERVE_BATCH = 1000


def package_sources() -> Path:
    """The aiows sources to copy: the checkout's, else the installed package's ``.py`` files."""
    checkout = HERE.parent / "aiows"
    if (checkout / "__init__.py").exists():
        return checkout
    import aiows

    return Path(aiows.__file__).parent


def pure_copy(destination: Path) -> Path:
    """Copy aiows' ``.py`` sources (no extension modules) under ``destination``; return it."""
    shutil.copytree(
        package_sources(), destination / "aiows", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    )
    return destination


def run_build(label: str, env: dict[str, str], quick: bool, output: Path) -> dict[str, Any]:
    """Run the suite in a subprocess; return ``{"compiled": bool, "best": {name: seconds}}``."""
    probe = subprocess.run(
        [sys.executable, "-c", "import aiows; print(aiows.COMPILED)"],
        cwd=HERE, env=env, capture_output=True, text=True, check=True,
    )
    compiled = probe.stdout.strip() == "True"
    timing = ["--benchmark-max-time=0.05", "--benchmark-min-rounds=20"] if quick else ["--benchmark-max-time=1.0"]
    command = [
        sys.executable, "-m", "pytest", "test_hotpath.py", "-q", "-p", "no:cacheprovider",
        f"--benchmark-json={output}", "--benchmark-disable-gc", *timing,
    ]  # fmt: skip
    print(f"== {label} build (aiows.COMPILED={compiled})", flush=True)
    result = subprocess.run(command, cwd=HERE, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stdout.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"the {label} benchmark run failed")
    report = json.loads(output.read_text())
    # The fastest round: on a shared machine, other processes only ever add time.
    best = {bench["name"]: bench["stats"]["min"] for bench in report["benchmarks"]}
    return {"compiled": compiled, "best": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds in all: a smoke run, not a measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        compiled = run_build("compiled", dict(os.environ), args.quick, tmpdir / "compiled.json")
        pure_env = dict(os.environ)
        pure_root = pure_copy(tmpdir / "pure")
        pure_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pure_root), os.environ.get("PYTHONPATH", "")]))
        pure = run_build("pure", pure_env, args.quick, tmpdir / "pure.json")
    if not compiled["compiled"]:
        print("warning: the installed aiows is not compiled; install it with mypyc to compare builds")
    if pure["compiled"]:
        raise SystemExit("the pure side imported a compiled aiows: check PYTHONPATH")
    print()
    print(f"{'benchmark (best round, per msg)':<32}{'compiled':>12}{'pure':>12}{'pure/compiled':>15}")
    for name, fast in compiled["best"].items():
        slow = pure["best"].get(name)
        if slow is None:
            continue
        scale = 1e9 / (SERVE_BATCH if name.startswith("test_serve_loop") else 1)  # per message
        print(f"{name:<32}{fast * scale:>10.0f}ns{slow * scale:>10.0f}ns{slow / fast:>14.2f}x")
    fast = compiled["best"].get(TARGET_BENCHMARK)
    slow = pure["best"].get(TARGET_BENCHMARK)
    floor = compiled["best"].get(FLOOR_BENCHMARK)
    if fast and slow:
        print(
            f"\nhot path with 3 middlewares: compiled is {slow / fast:.2f}x faster than pure "
            f"(target {TARGET_RATIO}x){' [quick run: not a measurement]' if args.quick else ''}"
        )
    if fast and slow and floor:
        print(
            f"the same work by hand, no framework ({FLOOR_BENCHMARK}): {floor * 1e9 / SERVE_BATCH:.0f}ns; "
            f"pure is {slow / floor:.2f}x and compiled {fast / floor:.2f}x of it"
        )
    external = compiled["best"].get(EXTERNAL_BENCHMARK)
    if slow and external:
        needed = slow / TARGET_RATIO
        print(
            f"only the work that is not aiows's ({EXTERNAL_BENCHMARK}): {external * 1e9 / SERVE_BATCH:.0f}ns; "
            f"{TARGET_RATIO}x over pure needs compiled at {needed * 1e9 / SERVE_BATCH:.0f}ns, "
            f"{'below' if needed < external else 'above'} it"
        )


if __name__ == "__main__":
    main()
