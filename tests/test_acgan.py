"""networks/acgan.py (--conditioning acgan): D predicts the class instead of reading it, and G's samples, read by
an independent MNIST classifier, have the class they were asked for."""

import os

import numpy as np
import tensorflow as tf
from conftest import eval_config, tiny_gan

import model
from evaluation import extractors, formulas
from training import inference, train, updates
from training.inference import restored_generator

v1 = tf.compat.v1


def test_acgan_discriminator_predicts_the_class_instead_of_reading_it(tmp_path):
    with tf.Graph().as_default():
        gan = tiny_gan(tmp_path, conditioning="acgan")
        names = {v.op.name for v in updates.scope_variables(model.DISCRIMINATOR_SCOPE)}
        assert "discriminator/d_class_lin/w" in names
        first_conv = [v for v in v1.global_variables() if v.op.name == "discriminator/d_h0_conv/w"][0]
        assert first_conv.shape[2] == 1  # the image's channel only: no label maps concatenated
        with v1.Session() as session:
            session.run(gan.initializer)
            losses_ = [session.run([gan.d_train_op, gan.d_loss])[1] for _ in range(30)]
    assert losses_[0] > 2 * np.log(2)  # the class terms (about 2 ln 10) on top of the adversarial ones
    assert np.mean(losses_[-5:]) < np.mean(losses_[:5])


def test_acgan_samples_have_the_class_they_were_asked_for(classifier_root):
    # AC-GAN's G is trained to make D's classifier read the requested class (Odena et al. 2017); after a
    # short run an independent MNIST classifier reads it too (1.0 here at 150 steps; chance is 0.1).
    config = eval_config(classifier_root, conditioning="acgan", gf_dim=8, df_dim=8, gfc_dim=64, dfc_dim=64,
                         batch_size=32, max_steps=150, train_size=0, learning_rate=1e-3, sample_freq=1000,
                         ckpt_freq=1000, summary_freq=1000, log_freq=1000)
    train.train(config)
    classifier = extractors.domain_classifier("mnist", os.path.join(classifier_root, "checkpoint"))
    requested = np.arange(200) % 10
    with restored_generator(config) as restored:
        images = restored.generator.generate(restored.session, inference.fixed_z(200, restored.config, 5), requested)
    statistics = formulas.class_statistics(classifier.class_probabilities(images), requested)
    assert statistics["class_accuracy"] > 0.5 and statistics["classes_present"] == 10, statistics
