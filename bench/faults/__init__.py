"""Fault injection on real training runs: what survives, and is anything lost?

    python -m bench.faults [--kills 20] [--fuzz 200] [--seed 0] [--soak_steps 5000]

Tiny conditional-MNIST runs (16x16, layer widths 4-16, batch 4, a sample, a
summary and a checkpoint every step, so that faults land inside writes) are
  * killed with SIGKILL at random moments, and in-process at each point of the
    save sequence; after every kill the restart must restore the newest
    complete checkpoint, bit for bit, never older than the last save the
    killed run had logged (kills.py);
  * interrupted with SIGINT and SIGTERM: they must save, exit 0 and resume
    (signals.py);
  * given NaN/Inf losses, gradients and input images under both --nan_policy
    values: no checkpoint may ever hold a non-finite value (nan.py);
  * refused their writes: ENOSPC injected into each kind of output, a real
    full tmpfs, read-only folders (the tmpfs variants need root to mount);
    each must end in one line (exit 2) with the checkpoint it names intact
    (disk.py);
  * fed fuzzed IDX bytes, image folders and flag values (fuzz.py), and damaged
    or hostile files of its own (architecture.json, checkpoint manifests,
    real-statistics .npz: wrong types, negative or huge sizes, truncation;
    hostile_files.py): only UserError, or for a cache the fallback of
    recomputing it;
  * soaked: RSS and step time after 100 and after 5,000 steps must agree
    within 5% (soak.py).
runs.py holds the tiny run and the checks every scenario shares; __main__.py
prints a markdown table for the README.  tests/test_faults.py and
tests/test_hostile_files.py run the same scenarios, fewer times.
"""
