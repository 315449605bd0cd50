"""The architecture options: those that define the networks' variables, declared with the networks.

`config.Config` includes them (its first fields) and `config.ARCHITECTURE_FIELDS` lists them; see
runtime/options.py for how an option is declared and what is derived from it.
"""

import dataclasses

from runtime.options import option


@dataclasses.dataclass
class ArchitectureOptions:
    """Stored beside the checkpoints (architecture.json): a checkpoint written with other values cannot be
    restored, so visualization, evaluation and export read them from the checkpoint folder."""

    output_height: int = option(0, "generated image height (0 = 28 for mnist/fashion, 32 cifar10, else 64); "
                                   "multiple of 16")
    output_width: int = option(0, "generated image width (0 = output_height)")
    c_dim: int = option(0, "image channels, 1 or 3 (0 = from the data)")
    y_dim: int = option(-1, "number of classes for a conditional model, at least the largest label + 1; needs "
                            "labelled data (mnist, fashion, cifar10) (0 = unconditional; -1 = dataset default: "
                            "mnist/fashion 10)")
    z_dim: int = option(100, "dimension of z")
    gf_dim: int = option(64, "generator filters in the last transposed conv layer")
    df_dim: int = option(64, "discriminator filters in the first conv layer")
    gfc_dim: int = option(1024, "generator fully connected units (conditional model)")
    dfc_dim: int = option(1024, "discriminator fully connected units (conditional model)")
    kernel_size: int = option(5, "convolution kernel of G and D: 5 (carpedm20) or 4 (the PyTorch reference DCGAN)")
    minibatch_stddev: bool = option(False, "give D a feature map of the batch's standard deviation "
                                           "(Karras et al. 2018)")
    z_dist: str = option("uniform", "distribution of z: uniform (in [-1, 1]) or gaussian")
    conditioning: str = option("concat", "conditional models: concat (labels concatenated to D's input, carpedm20) "
                                         "or acgan (D predicts the class, Odena et al. 2017)")
    arch: str = option("dcgan", "network family: dcgan (convolutional, networks/dcgan.py), mlp (the fully connected "
                                "vanilla GAN, networks/mlp.py; widths from --gfc_dim/--dfc_dim), or style (StyleGAN's "
                                "generator: mapping network, learned constant, noise, AdaIN; sizes 16, 32, 64, ...; "
                                "with the DCGAN discriminator)")
    g_upsample: str = option("", "G's upsampling: deconv (transposed convolutions) or resize_conv (nearest-neighbour "
                                 "x2, then a stride-1 convolution: fewer checkerboard artefacts); default: "
                                 "resize_conv for unconditional MNIST/Fashion-MNIST, deconv otherwise")
    d_head: str = option("dense", "D's last layer: dense (on the flattened features) or gap (global average "
                                  "pooling, then dense)")
    g_norm: str = option("", "G's normalisation: batch, instance, layer or none (default: batch)")
    d_norm: str = option("", "D's normalisation: batch, instance, layer or none (default: batch for dcgan, "
                             "none for mlp)")
    spectral_norm: bool = option(False, "spectral normalization of every D weight (Miyato et al. 2018; one power "
                                        "iteration per update)")
    # On by default: sampling from the average cut one-epoch MNIST FID from 104 to 30 (docs/ablation.md), at no
    # cost to training.
    g_ema: float = option(0.999, "keep an exponential moving average of G's weights with this decay (e.g. 0.999) "
                                 "and sample, evaluate and export with it; 0 = off")
    # --arch style: the style-based generator (networks/style.py)
    mapping_layers: int = option(8, "--arch style: dense layers of the mapping network z -> w")
    w_dim: int = option(512, "--arch style: size of w (and of the mapping network's layers)")
    mapping_lr_multiplier: float = option(0.01, "--arch style: learning-rate multiplier of the mapping network "
                                                "(0.01 in StyleGAN)")
    style_upsample: str = option("nearest", "--arch style: upsampling between resolutions, nearest or bilinear")
