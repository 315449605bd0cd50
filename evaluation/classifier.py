"""Trains the MNIST / Fashion-MNIST / CIFAR-10 classifiers that serve as offline feature networks.

    python -m evaluation.classifier --train_classifier mnist|fashion|cifar10 [--data_dir data] [--checkpoint_dir D]

MNIST, Fashion-MNIST and CIFAR-10 get a small CNN each (`evaluation/extractors.py`
defines them); its penultimate layer is the feature space of FID/KID/precision
and recall when no Inception graph is given, and its softmax gives the class
statistics of generated samples.  Training is a command of its own, not part of
a GAN run, because its weights are the ruler every later number is measured
with: they are trained once, their test accuracy is recorded beside them
(classifier.json), and their digest keys every cached statistic.
"""

import argparse
import json
import os
import sys

import numpy as np

from datasets.formats import dataset_directory, load_mnist_like, read_cifar10
from evaluation import extractors
from runtime.errors import UserError
from runtime.tf_runtime import session_config, tf
from utils import write_atomically

v1 = tf.compat.v1


def train_classifier(dataset, train_data, test_data, checkpoint_dir="checkpoint", steps=None, batch_size=64,
                     learning_rate=1e-3, seed=0, training_data=None, log=print):
    """Trains the classifier on (images uint8, labels), measures test accuracy, saves both.

    Returns the measured test accuracy.  The accuracy is measured through a
    `ClassifierExtractor` reloaded from the saved checkpoint, so it checks the
    file that metrics will actually use.  Only trainable variables are saved
    (no Adam slots): the checkpoint is small and its digest covers just the net.
    `steps` None is the dataset's default; `training_data` (what the images
    are, e.g. "lossy JPEG class folders") goes into classifier.json and the
    extractor's name.
    """
    spec = extractors.CLASSIFIERS[dataset]
    steps = steps or spec.steps
    train_images, train_labels = train_data
    prefix = extractors.classifier_prefix(checkpoint_dir, dataset)
    info_path = os.path.join(extractors.classifier_directory(checkpoint_dir, dataset), extractors.CLASSIFIER_INFO)
    with tf.Graph().as_default() as graph:
        v1.set_random_seed(seed)
        images = v1.placeholder(tf.float32, [None, *spec.input_shape])
        labels = v1.placeholder(tf.int64, [None])
        _, logits = spec.network(images)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
        # Linear decay to 0: the last steps average out minibatch noise, +0.3 points of MNIST test accuracy here.
        global_step = v1.train.get_or_create_global_step()
        decayed = v1.train.polynomial_decay(learning_rate, global_step, steps, end_learning_rate=0.0)
        train_op = v1.train.AdamOptimizer(decayed).minimize(loss, global_step=global_step)
        saver = v1.train.Saver(v1.trainable_variables(extractors.CLASSIFIER_SCOPE))
        rng = np.random.default_rng(seed)
        with v1.Session(graph=graph, config=session_config()) as session:
            session.run(v1.global_variables_initializer())
            order = np.array([], dtype=np.int64)
            for step in range(1, steps + 1):
                if len(order) < batch_size:
                    order = np.concatenate([order, rng.permutation(len(train_images))])
                batch, order = order[:batch_size], order[batch_size:]
                batch_images = train_images[batch]
                if spec.mirror:
                    flipped = rng.random(len(batch)) < 0.5
                    batch_images = np.where(flipped[:, None, None, None], batch_images[:, :, ::-1], batch_images)
                feed = {images: batch_images.astype(np.float32), labels: train_labels[batch]}
                batch_loss, batch_accuracy, _ = session.run([loss, accuracy, train_op], feed)
                if step % 500 == 0 or step == steps:
                    log(f"step {step}/{steps}: loss {batch_loss:.4f}, batch accuracy {batch_accuracy:.3f}")
            os.makedirs(os.path.dirname(prefix), exist_ok=True)
            if os.path.exists(info_path):
                os.remove(info_path)  # the old accuracy no longer describes the weights about to be written
            saver.save(session, prefix, write_meta_graph=False)
    extractor = extractors.ClassifierExtractor(checkpoint_dir, dataset)
    test_images, test_labels = test_data
    test_accuracy = float(np.mean(extractor.class_probabilities(test_images).argmax(axis=1) == test_labels))
    info = {"dataset": dataset, "test_accuracy": test_accuracy, "test_images": len(test_labels),
            "train_images": len(train_labels), "steps": steps, "batch_size": batch_size, "digest": extractor.digest}
    if training_data:
        info["training_data"] = training_data
    write_atomically(info_path, json.dumps(info, indent=2) + "\n")
    log(f"test accuracy {test_accuracy:.4f} on {len(test_labels)} {extractors.CLASSIFIER_DATASETS[dataset]} test "
        f"images; saved to {os.path.dirname(prefix)}")
    return test_accuracy


def train_classifier_from_directory(dataset, data_dir="data", checkpoint_dir="checkpoint", steps=None, log=print):
    """Reads the dataset's train and test splits and trains the classifier (the CLI's and the benchmark's entry).

    CIFAR-10's classifier records which copy it learned from (binary batches or a lossy JPEG copy)."""
    directory = dataset_directory(dataset, data_dir)
    if dataset == "cifar10":
        train, test = read_cifar10(directory, "train"), read_cifar10(directory, "test")
        return train_classifier(dataset, train[:2], test[:2], checkpoint_dir=checkpoint_dir, steps=steps,
                                training_data=train.origin, log=log)
    return train_classifier(dataset, load_mnist_like(directory, "train", dataset),
                            load_mnist_like(directory, "test", dataset),
                            checkpoint_dir=checkpoint_dir, steps=steps, log=log)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_classifier", required=True, choices=sorted(extractors.CLASSIFIER_DATASETS),
                        help="train the MNIST / Fashion-MNIST / CIFAR-10 feature classifier and print its test "
                             "accuracy")
    parser.add_argument("--data_dir", default="data",
                        help="folder holding <dataset>/ (IDX files; CIFAR-10's binary batches or class folders)")
    parser.add_argument("--checkpoint_dir", default="checkpoint",
                        help="saves to <checkpoint_dir>/classifier_<dataset>/")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps of batch 64 (default: " + ", ".join(
                            f"{name} {spec.steps}" for name, spec in extractors.CLASSIFIERS.items()) + ")")
    args = parser.parse_args(argv)
    try:
        train_classifier_from_directory(args.train_classifier, args.data_dir, args.checkpoint_dir, args.steps)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
