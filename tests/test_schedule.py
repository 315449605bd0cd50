"""Progress is counted in examples read: one epoch reads each example exactly once."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

from datasets import pipeline as data
from model import DCGAN
from training import train

v1 = tf.compat.v1


@pytest.mark.parametrize("recipe", [
    {"d_steps": 1, "g_steps": 2},
    {"d_steps": 2, "g_steps": 1, "feature_matching": True},
    {"d_steps": 1, "g_steps": 2, "fused_update": True, "d_batchnorm": "combined"},
])
def test_one_epoch_of_steps_reads_each_example_exactly_once(tmp_path, recipe):
    config = tiny_config(tmp_path, train_size=16, **recipe)  # conditional MNIST, batch 4
    source = data.open_source(config)
    config = dataclasses.replace(config, c_dim=source.c_dim)
    schedule = train.Schedule(config, source.num_examples)
    assert schedule.steps_per_epoch * schedule.images_per_step == 16
    with tf.Graph().as_default():
        batches = data.input_batches(source, config, epochs=1)  # a stream of exactly one epoch
        gan = DCGAN(config, batches.images, batches.labels)
        # D's real batches, as D's update saw them, gathered from every run of the step plan.
        seen = []
        with v1.Session() as session:
            session.run(gan.initializer)
            batches.initialize(session)
            for _ in range(schedule.steps_per_epoch):
                for fetches, _summary in train.step_plan(config, gan):
                    if "d_applied" in fetches:
                        session.run(fetches)
                        seen.append(session.run(gan.last_real_images))
                    else:
                        session.run(fetches)
            with pytest.raises(tf.errors.OutOfRangeError):  # nothing was left: no update read an extra batch
                session.run(batches.images)
    with tf.Graph().as_default():  # the epoch as the pipeline alone gives it, batch after batch
        batches = data.input_batches(source, config, epochs=1)
        with v1.Session() as session:
            batches.initialize(session)
            epoch = [session.run(batches.images) for _ in range(16 // config.batch_size)]

    def rows(images):
        return sorted(np.concatenate(images).reshape(16, -1).tolist())

    assert len({tuple(r) for r in rows(epoch)}) == 16  # 16 distinct examples
    assert rows(seen) == rows(epoch)  # D saw each of them once, none twice
