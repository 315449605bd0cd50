"""`python -m bench.faults`: every scenario in turn, more often than the tests run them, and the README's table."""

import argparse
import collections
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import faults, harness
from bench.faults.disk import disk_full_cases, read_only_cases, real_disk_full
from bench.faults.fuzz import check_config, check_idx, check_image_folder, config_values, fuzz, idx_bytes, image_files
from bench.faults.hostile_files import (
    _manifest_names,
    architecture_files,
    check_architecture,
    check_manifest,
    check_statistics,
    manifest_files,
    statistics_files,
)
from bench.faults.kills import kill_points, random_kills
from bench.faults.nan import LIMIT, NAN_CASES, nan_case
from bench.faults.signals import interrupt
from bench.faults.soak import soak, soak_row


def main():
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=faults.__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="random SIGKILLs")
    parser.add_argument("--fuzz", type=int, default=200, help="fuzzed inputs of each kind (image folders: a quarter)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--soak_steps", type=int, default=5000, help="length of the soak run (0: skip it)")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        def work(name):
            return Path(tmp) / name

        kills = random_kills(work("kills"), args.kills, args.seed)
        points = kill_points(work("points"))
        signals = [interrupt(work(s.name), s) for s in (signal.SIGINT, signal.SIGTERM)]
        nan = [nan_case(work(f"nan{i}"), name) for i, name in enumerate(NAN_CASES)]
        full = disk_full_cases(work("full"))
        real = [m for m in (real_disk_full(work(f"real{kb}"), kb) for kb in (900, 4000, 9000, 13000)) if m]
        read_only = read_only_cases(work("read_only")) or []
        soaked = soak(work("soak"), args.soak_steps) if args.soak_steps else None
        inputs = {
            "IDX byte strings": fuzz(check_idx, idx_bytes(), args.fuzz, args.seed),
            "image folders": fuzz(lambda files: check_image_folder(work("images"), files), image_files(),
                                  args.fuzz // 4, args.seed),
            "flag sets": fuzz(check_config, config_values(), args.fuzz, args.seed),
            "architecture.json files": fuzz(lambda raw: check_architecture(work("hostile"), raw),
                                            architecture_files(), args.fuzz, args.seed),
            "checkpoint manifests": fuzz(lambda raw: check_manifest(work("hostile"), raw),
                                         manifest_files(_manifest_names(work("hostile"))), args.fuzz, args.seed),
            "real-statistics .npz files": fuzz(lambda raw: check_statistics(work("stats"), raw), statistics_files(),
                                               args.fuzz, args.seed),
        }
    for what, (_, failures) in inputs.items():
        for error, value in failures[:3]:
            print(f"{what}: {error} on {value}", file=sys.stderr)
    moments = collections.Counter(kill.moment for kill in kills)
    lost = sum(kill.lost for kill in [*kills, *points, *signals])
    rows = [
        ("SIGKILL at random moments of `main.py --train` (checkpoint every step)",
         f"{len(kills)}: " + ", ".join(f"{n} {moment}" for moment, n in moments.most_common()),
         "every restart restored the newest complete checkpoint, bit for bit; a second run on the folder "
         "was refused naming the first's pid, and the killed run's lock was taken over"),
        ("death at each point of a save (in-process)", f"{len(points)}: " + "; ".join(k.moment for k in points),
         "restored the previous checkpoint until the new one's manifest was written, then the new one"),
        ("SIGINT, SIGTERM", str(len(signals)), "saved, exit 0, resumed at the saved step"),
        ("NaN/Inf in G's loss, G's gradient or D's input, `--nan_policy stop` and `skip`", str(len(nan)),
         "stop: exit 3 naming the step and last checkpoint; skip: updates skipped, stops after "
         f"{LIMIT} in a row; a NaN input batch is skipped, BatchNorm averages included; "
         "no checkpoint ever held a NaN/Inf"),
        ("disk full (ENOSPC)", f"{len(full)} writers injected ({', '.join(full)}); {len(real)} real full tmpfs",
         "one line, exit 2, the checkpoint it names intact"),
        ("read-only folder (samples mid-run, checkpoints at start)", str(len(read_only)),
         "one line, exit 2, checkpoints intact"),
        ("bad inputs (hypothesis)", ", ".join(f"{n} {what}" for what, (n, _) in inputs.items()),
         "; ".join(f"{what}: {len(failures)} raised {failures[0][0]}" for what, (_, failures) in inputs.items()
                   if failures)
         or "only UserError (one line, exit 2); or clean batches with bad files skipped, a manifest rejected "
            "(the older checkpoint restored), a statistics cache recomputed"),
        *([soak_row(soaked)] if soaked else []),
        ("**data lost** (acknowledged saves not restored, over every kill and signal)", "", f"**{lost}**"),
    ]
    print(harness.table_header(["fault", "cases", "outcome"]))
    for row in rows:
        print(harness.table_row(row))
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {(time.time() - started) / 60:.0f} min: "
          f"python -m bench.faults --kills {args.kills} --fuzz {args.fuzz} --seed {args.seed} "
          f"--soak_steps {args.soak_steps}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
