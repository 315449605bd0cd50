"""training/random_streams.py: every draw is a stateless function of (seed, stream, counter), so a run resumed
from its checkpointed counter draws exactly what the uninterrupted run drew, and replicas draw apart."""

import numpy as np

from runtime.tf_runtime import tf
from training.random_streams import RandomStreams

v1 = tf.compat.v1


def draws(runs, seed=1, start=0):
    """Two consumers' uniform draws over `runs` session runs of a fresh graph whose counter starts at `start`."""
    with tf.Graph().as_default(), v1.Session() as session:
        streams = RandomStreams(seed)
        first, second = streams.uniform([6]), streams.uniform([6])
        session.run(v1.global_variables_initializer())
        streams.counter.load(start, session)
        return [session.run([first, second]) for _ in range(runs)]


def test_each_run_draws_anew_and_each_consumer_has_its_own_stream():
    (first, second), (first_next, _) = draws(2)
    assert not np.array_equal(first, second)  # one run, two streams
    assert not np.array_equal(first, first_next)  # one stream, the next run


def test_a_run_resumed_from_its_counter_continues_the_same_draws_and_another_seed_does_not():
    uninterrupted = draws(3)
    resumed = draws(1, start=2)  # the counter a checkpoint saved after two runs
    np.testing.assert_array_equal(resumed[0], uninterrupted[2])
    assert not np.array_equal(draws(1, seed=2)[0][0], uninterrupted[0][0])


def test_replicas_draw_apart_only_when_the_batch_is_split_between_them():
    for replicas, apart in ((2, True), (1, False)):
        with tf.Graph().as_default(), v1.Session() as session:
            streams = RandomStreams(1, replicas=replicas)
            per_replica = []
            for replica in range(2):
                streams.on_replica(replica)
                per_replica.append(streams.normal([4]))
            session.run(v1.global_variables_initializer())
            zero, one = session.run(per_replica)
        assert (not np.array_equal(zero, one)) == apart, replicas


def test_integers_cover_low_to_high_minus_one():
    with tf.Graph().as_default(), v1.Session() as session:
        streams = RandomStreams(1)
        values = streams.integers([2000], 3, 7)
        session.run(v1.global_variables_initializer())
        assert sorted(set(session.run(values))) == [3, 4, 5, 6]
