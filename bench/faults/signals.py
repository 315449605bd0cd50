"""SIGINT and SIGTERM during `main.py --train`: the run must save, exit 0, and resume from that save."""

import signal

from bench.faults.runs import FOREVER, SAVED_LINE, Kill, restore_check, start_run, tiny_config, wait_for


def interrupt(work_dir, signum):
    """Sends `signum` to a main.py run after step 3 (with no periodic
    checkpoints); it must save, exit 0, and resume from that save."""
    process, log_path = start_run(work_dir, signal.Signals(signum).name, max_steps=FOREVER, ckpt_freq=FOREVER)
    try:
        wait_for(log_path, " step 3 |", process)
        process.send_signal(signum)
        assert process.wait(timeout=120) == 0, log_path.read_text()
    finally:
        process.kill()
        process.wait()
    saved = max(map(int, SAVED_LINE.findall(log_path.read_text())))
    return Kill(f"{signal.Signals(signum).name} after step 3", saved, restore_check(tiny_config(work_dir)))
