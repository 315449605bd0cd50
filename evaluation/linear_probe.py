"""D as a feature extractor: `python main.py --dataset cifar10 --linear_probe`.

The DCGAN paper (Radford et al. 2015, section 5.1; document 004) measures what
the discriminator learned without labels by max-pooling each of its layers'
activations to a 4x4 grid, concatenating them, and training a linear
classifier on those features of the labelled training set.  Here the
classifier is multinomial logistic regression (L2-regularised, full-batch
Adam), and the same probe on a randomly initialised D of the same
architecture is the baseline: random convolutional features are far from
useless, so only the difference says what GAN training added.

D normalises with the statistics of the batch it is given, so features are
computed in fixed batches of FEATURE_BATCH examples in the datasets' order.
`--train_size N` probes on the first N training examples (the feature matrix
holds N x features float32 values; the full training set of a 64-wide D needs
a few GB).
"""

import dataclasses
import json
import logging
import math
import os

import numpy as np

import utils
from datasets import formats
from datasets import pipeline as data
from networks import DISCRIMINATOR_SCOPE, discriminator, network_spec
from runtime.errors import UserError
from runtime.tf_runtime import tf
from training.checkpoints import Checkpoints, read_architecture
from training.updates import scope_variables

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

FEATURE_BATCH = 500
POOLED_GRID = 4  # each feature map is max-pooled to at most 4x4 positions (the paper's grid)
PROBE_STEPS = 300
PROBE_LEARNING_RATE = 0.01
PROBE_L2 = 1e-4


def labelled_splits(config):
    """(train images, train labels), (test images, test labels) as uint8 NHWC and int64."""
    directory = formats.dataset_directory(config.dataset, config.data_dir)
    if config.dataset == "cifar10":
        train, test = formats.load_cifar10(directory, "train"), formats.load_cifar10(directory, "test")
    else:
        train = formats.load_mnist_like(directory, "train", config.dataset)
        test = formats.load_mnist_like(directory, "test", config.dataset)
    if config.train_size:
        train = tuple(array[: config.train_size] for array in train)
    return train, test


def pooled(activation):
    """One layer's activations as a vector per example: feature maps max-pooled
    to a POOLED_GRID x POOLED_GRID grid (NHWC), dense activations as they are."""
    if activation.shape.ndims == 2:
        return activation
    height, width = activation.shape[1], activation.shape[2]
    window = [math.ceil(height / POOLED_GRID), math.ceil(width / POOLED_GRID)]
    maps = tf.nn.max_pool2d(activation, window, window, "SAME")
    return tf.reshape(maps, [-1, maps.shape[1:].num_elements()])


class FeatureExtractor:
    """D's pooled features of every layer, on uint8 images of any size (resized like the training data)."""

    def __init__(self, config, image_shape):
        self.config = config
        self.images = v1.placeholder(tf.uint8, [None, *image_shape], name="probe_images")
        resized = tf.map_fn(lambda image: data._crop_and_resize(data._match_channels(image, config.c_dim), config),
                            self.images, fn_output_signature=tf.uint8)
        layers = []
        discriminator(tf.cast(resized, tf.float32) / 127.5 - 1.0, None, network_spec(config), layers)
        channels_last = [tf.transpose(a, [0, 2, 3, 1]) if a.shape.ndims == 4 and config.data_format == "NCHW"
                         else a for a in layers]
        self.features = tf.concat([pooled(a) for a in channels_last], axis=1)

    def __call__(self, session, images):
        return np.concatenate([session.run(self.features, {self.images: images[start:start + FEATURE_BATCH]})
                               for start in range(0, len(images), FEATURE_BATCH)])


def probe_accuracy(train_features, train_labels, test_features, test_labels, seed, classes=10):
    """Test accuracy of L2-regularised logistic regression fitted to the training features.

    Features are standardised with the training set's mean and spread so one
    learning rate and one L2 weight suit every layer and every D."""
    mean, std = train_features.mean(axis=0), train_features.std(axis=0) + 1e-6
    with tf.Graph().as_default():
        v1.set_random_seed(seed)
        features = v1.placeholder(tf.float32, [None, train_features.shape[1]])
        labels = v1.placeholder(tf.int64, [None])
        weights = v1.get_variable("w", [train_features.shape[1], classes], initializer=v1.zeros_initializer())
        bias = v1.get_variable("b", [classes], initializer=v1.zeros_initializer())
        logits = tf.matmul(features, weights) + bias
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train_op = v1.train.AdamOptimizer(PROBE_LEARNING_RATE).minimize(loss + PROBE_L2 * tf.nn.l2_loss(weights))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1), labels), tf.int64))
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            fit = {features: (train_features - mean) / std, labels: train_labels}
            for _ in range(PROBE_STEPS):
                session.run(train_op, fit)
            hits = session.run(correct, {features: (test_features - mean) / std, labels: test_labels})
    return hits / len(test_labels)


def probe(config, train, test, checkpoint_directory=None):
    """Test accuracy of the probe on D restored from `checkpoint_directory`
    (its newest checkpoint), or on a randomly initialised D when it is None;
    returns (accuracy, feature count)."""
    with tf.Graph().as_default():
        v1.set_random_seed(config.seed)
        extractor = FeatureExtractor(config, train[0].shape[1:])
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            if checkpoint_directory is not None:
                saver = v1.train.Saver(scope_variables(DISCRIMINATOR_SCOPE, v1.GraphKeys.GLOBAL_VARIABLES))
                path = Checkpoints(checkpoint_directory, saver, config.architecture()).restore(session)
                log.info("linear probe: restored D from %s", path)
            train_features, test_features = extractor(session, train[0]), extractor(session, test[0])
    return probe_accuracy(train_features, train[1], test_features, test[1], config.seed), train_features.shape[1]


def run_linear_probe(config):
    """Prints and saves (<sample_path>/linear_probe.json) the probe's test
    accuracy on the trained D of `config`'s run and on a random D."""
    architecture = read_architecture(config.checkpoint_path)
    if architecture is None:
        raise UserError(f"no checkpoint in {config.checkpoint_path}; train first with the same flags and --train")
    config = dataclasses.replace(config, **architecture)
    train, test = labelled_splits(config)
    trained, feature_count = probe(config, train, test, config.checkpoint_path)
    random, _ = probe(config, train, test)
    results = {"dataset": config.dataset, "train_examples": len(train[1]), "test_examples": len(test[1]),
               "features": feature_count, "trained_d_accuracy": trained, "random_d_accuracy": random}
    print(f"linear probe on {config.dataset} ({len(train[1])} training, {len(test[1])} test examples, "
          f"{feature_count} features): trained D {trained:.2%}, random D {random:.2%}")
    output = os.path.join(config.sample_path, "linear_probe.json")
    os.makedirs(config.sample_path, exist_ok=True)
    utils.write_atomically(output, json.dumps(results, indent=2) + "\n")
    log.info("wrote %s", output)
    return results
