"""bench/end_to_end.py's measuring parts: a child's lines timed as they arrive, its own peak RSS, and the rate
over the window between two log lines."""

import sys

from bench import end_to_end


def test_timed_lines_stamps_each_line_when_it_arrives_and_reads_the_childs_own_peak_rss():
    child = ("import sys, time; print('step 10 |', flush=True); time.sleep(0.5); "
             "buffer = bytearray(b'x' * (200 * 2**20)); print('done at step', flush=True); sys.exit(3)")
    lines, code, peak_rss_mib = end_to_end.timed_lines([sys.executable, "-c", child], env=None)
    (t_start, first), (t_end, last) = lines
    assert (first, last, code) == ("step 10 |", "done at step", 3)
    assert 0.45 < t_end - t_start < 5  # the sleep between the two lines, not the process's whole life
    small = end_to_end.timed_lines([sys.executable, "-c", "print('x')"], env=None)[2]
    assert small < 100 < 200 < peak_rss_mib  # each child's own peak, not this process's or the largest so far


def test_window_rate_counts_images_between_the_first_start_line_and_the_last_end_line():
    lines = [(1.0, "epoch 1 step 10 |"), (2.0, "epoch 1 step 20 |"), (3.0, "saved"), (5.0, "saved")]
    rate = end_to_end.window_rate(lines, lambda line: "step" in line, lambda line: line == "saved", 640)
    assert rate == 640 / 4.0
