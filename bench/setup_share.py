"""What `[worktree] share` and `[worktree] pool` save: 12 lanes whose setup installs a
dependency folder of 5 000 files from the lockfile `deps.lock`, time from `orchestree
execute` to the last lane's agent start.

Seven runs in one go: no setup at all (the baseline), the setup in every worktree,
the setup once with `share = ["deps"]` and `share_key = ["deps.lock"]`: cold (the
template is built in this run, while the lanes wait for it), warm (an earlier run
built the template and, while it ran, the copies made ahead that lanes take with one
rename) and warm without copies (each lane links its own farm, as a run does whose
lanes take copies faster than they are made), and `pool = 12`, alone and with
`share`, its spares made ahead (an earlier run left them: a pool's spares are made
while earlier lanes run, which one wave of 12 lanes starting at once does not have).
In the warm `share` rows the earlier run is on another base commit: its lane's commit
(a file that is not the lockfile) is merged before the measured run, as in real use,
where every merge moves the base; `share_key` keeps the template and its copies across
it. `pool` alone has no `share_key` to follow (setup runs in each spare, and may read
any file), so its spares serve the same base commit only: its earlier run is not merged.
Target: with `share`, warm, at most 1.3x the time with no setup. Median of `--repeat`
runs, the modes interleaved; prints a markdown table.

    python bench/setup_share.py [--lanes 12] [--files 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rows import emit
from _setup import IDENTITY, ORCHESTREE

TARGET = 1.3
# The "install": 5 000 small files in 100 packages, as a package manager leaves them.
INSTALL = """
import os, sys
n = int(sys.argv[1])
for i in range(n):
    pkg = os.path.join("deps", f"pkg{i % 100}")
    os.makedirs(pkg, exist_ok=True)
    with open(os.path.join(pkg, f"mod{i}.js"), "w") as fh:
        fh.write(f"module.exports = {i};\\n" * 8)
"""


def _git(cwd: Path, *args: str) -> None:
    env = {**os.environ, **IDENTITY}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def make_repo(folder: Path, lanes: int, files: int, mode: str) -> Path:
    repo = folder / "repo"
    repo.mkdir(parents=True)
    (repo / "install.py").write_text(INSTALL, encoding="utf-8")
    (repo / "deps.lock").write_text("pkg0..pkg99 1.0.0\n", encoding="utf-8")
    (repo / ".gitignore").write_text("deps/\n", encoding="utf-8")
    config = f'[defaults]\nagent = "shell"\nmax_parallel = {lanes}\n'
    if mode != "none":
        config += f'[worktree]\nsetup = "{sys.executable} install.py {files}"\n'
    if mode.startswith("share"):
        config += 'share = ["deps"]\nshare_key = ["deps.lock"]\n'
    if mode.endswith("pool"):
        config += f"pool = {lanes}\n"
    (repo / "orchestree.toml").write_text(config, encoding="utf-8")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "init")
    starts = folder / "starts"
    starts.mkdir()
    lane_json = ",".join(
        f'"l{n}": {{"tasks": ["date +%s.%N > {starts}/l{n}"]}}' for n in range(lanes)
    )
    spec = folder / "lanes.json"
    spec.write_text("{" + lane_json + "}", encoding="utf-8")
    warm = folder / "warm.json"
    # The earlier run lasts until its pool's spares, or share's copies, are all made.
    spares, copies = "../.pool/*.ready", "../../.orchestration/share/*/copies/0/c-*"
    ready = {"pool": spares, "share-pool": spares, "share-warm": copies}.get(mode, "")
    wait = f"until [ $(ls -d {ready} | wc -l) -ge {lanes} ]; do sleep 0.1; done"
    # Its lane commits a file that is not the lockfile; merged, it moves the base commit.
    tasks = [wait] if ready else []
    warm.write_text(json.dumps({"warm": {"tasks": [*tasks, "echo warm > warm.txt"]}}),
                    encoding="utf-8")  # fmt: skip
    steps = [["init"]]
    if mode in ("share-warm", "share-link", "pool", "share-pool"):  # an earlier run
        steps += [["add-lane", "--from", str(warm)], ["execute"]]
    if mode in ("share-warm", "share-link", "share-pool"):  # ... on another base commit
        steps.append(["merge"])
    steps.append(["add-lane", "--from", str(spec)])
    env = {**os.environ, **IDENTITY}
    for args in steps:
        subprocess.run([ORCHESTREE, *args, "--repo", str(repo)], env=env, check=True,
                       capture_output=True)  # fmt: skip
        if mode == "share-link" and args == ["execute"]:  # the template, without copies
            for copies in (repo / ".orchestration" / "share").glob("*/copies"):
                shutil.rmtree(copies)
    if "merge" in (args[0] for args in steps):  # the measured run is on a new base commit
        merged = subprocess.run(["git", "log", "-1", "--format=%s", "--", "warm.txt"],
                                cwd=repo, capture_output=True, text=True, check=True)  # fmt: skip
        assert merged.stdout.strip(), "the earlier run's lane was not merged"
    return repo


def last_start(lanes: int, files: int, mode: str) -> float:
    """Seconds from starting `execute` to the last agent's first line."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        repo = make_repo(folder, lanes, files, mode)
        env = {**os.environ, **IDENTITY}
        began = time.time()
        subprocess.run(
            [ORCHESTREE, "execute", "--repo", str(repo)], env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        stamps = [float(p.read_text()) for p in (folder / "starts").iterdir()]
        assert len(stamps) == lanes, f"{len(stamps)} of {lanes} lanes started"
        if mode in ("share-warm", "share-link", "share-pool"):  # the earlier run's served
            made = list((repo / ".orchestration" / "share").glob("*/tree"))
            assert len(made) == 1, f"{mode}: the template was made again on the new base"
        shutil.rmtree(repo, ignore_errors=True)
        return max(stamps) - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lanes", type=int, default=12)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    modes = ("none", "every", "share", "share-warm", "share-link", "pool", "share-pool")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):  # interleaved, so load drifts hit every mode alike
        for mode, values in times.items():
            values.append(last_start(args.lanes, args.files, mode))
    med = {mode: statistics.median(values) for mode, values in times.items()}
    print(f"| {args.lanes} lanes, setup of {args.files} files | to last agent start | ratio |")
    print("|---|---:|---:|")
    for mode, label in (("none", "no setup"), ("every", "setup in every worktree"),
                        ("share", "`share`, template made in this run"),
                        ("share-warm", "`share`, template and copies made by an earlier run "
                         "on another base commit"),
                        ("share-link", "`share`, template made by an earlier run on another "
                         "base commit, no copies"),
                        ("pool", "`pool`, spares made ahead on the same base commit"),
                        ("share-pool", "`share` + `pool`, spares made ahead on another base "
                         "commit")):  # fmt: skip
        print(f"| {label} | {med[mode]:.2f} s | {med[mode] / med['none']:.2f}x |")
    what = f"{args.lanes} lanes, setup of {args.files} files: to the last agent start"
    base = f"{med['none']:.2f} s (no setup)"
    ratio = med["share-warm"] / med["none"]
    emit("setup_share.py", f"{what}, `share` (template and copies from an earlier run on "
         "another base commit)",
         f"{med['share-warm']:.2f} s", base, ratio, f"≤ {TARGET}x", ratio <= TARGET)  # fmt: skip
    emit("setup_share.py", f"{what}, `share` (template from an earlier run on another base "
         "commit, each lane links)",
         f"{med['share-link']:.2f} s", base, med["share-link"] / med["none"], "", None)  # fmt: skip
    emit("setup_share.py", f"{what}, `share` (template made in this run)",
         f"{med['share']:.2f} s", base, med["share"] / med["none"], "", None)  # fmt: skip
    emit("setup_share.py", f"{what}, setup in every worktree", f"{med['every']:.2f} s", base,
         med["every"] / med["none"], "", None)  # fmt: skip
    for mode, label in (("pool", "`pool` (spares made ahead on the same base commit)"),
                        ("share-pool", "`share` + `pool` (spares made ahead on another base "
                         "commit)")):  # fmt: skip
        emit("setup_share.py", f"{what}, {label}", f"{med[mode]:.2f} s", base,
             med[mode] / med["none"], "", None)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
