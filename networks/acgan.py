"""AC-GAN's auxiliary classifier (Odena et al. 2017, --conditioning acgan): D is not shown the labels, it
predicts them from its features, and both networks add the classifier's loss.

A head on D's features under D's scope (its weights are D's and train with D's update), the same on every
family's D, so it lives beside the networks rather than in any one of them.
"""

import ops
from networks import DISCRIMINATOR_SCOPE
from runtime.tf_runtime import tf

v1 = tf.compat.v1


def class_logits(features, classes):
    """The classifier's logits over `classes` labels, from D's features (one linear layer)."""
    with v1.variable_scope(DISCRIMINATOR_SCOPE, reuse=v1.AUTO_REUSE):
        return ops.linear(features, classes, name="d_class_lin")


def class_loss(logits, onehot):
    """-Σ_c y_c log softmax(logits)_c, averaged over the batch: minus the log-likelihood of the correct class
    (L_C in Odena et al. 2017, which D and G both maximise), so both networks minimise it."""
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits))
