"""Network families, one module each; `model.py` wires them into the training graph.

Every generator maps (z, one-hot labels or None) to NHWC images in [-1, 1]
under the `generator/` scope; every discriminator maps NHWC images (and
labels) to (logits, features) under `discriminator/`.
"""

GENERATOR_SCOPE = "generator"
DISCRIMINATOR_SCOPE = "discriminator"
