"""Differentiable augmentation of every image the discriminator sees (--diffaugment).

Zhao, Liu, Lin, Zhu and Han 2020, "Differentiable Augmentation for Data-Efficient GAN Training"
(arXiv 2006.10738).  With few training images D memorises them, its loss on real data goes to zero
and G's signal fades.  Augmenting only the reals would teach G to make augmented images; augmenting
only D's update would leave D judging, in G's update, images of a kind it was not trained on.
DiffAugment draws a random transform T for every image D is shown, real or fake, in both updates:

    L_D = f(-D(T(x))) + f(D(T(G(z)))),        L_G = f(-D(T(G(z))))

and every T is differentiable in the image, so G's gradient reaches G through it.  Each image gets
its own draw; the families (the paper's, applied in this order):

  color        brightness  x + b,                                b ~ U(-0.5, 0.5)
               saturation  (x - mean_c x) * s + mean_c x,        s ~ U(0, 2)    (mean over a pixel's channels)
               contrast    (x - mean x) * k + mean x,            k ~ U(0.5, 1.5) (mean over the whole image)
  translation  the content moves by (dy, dx), each an integer ~ U{-r, ..., r}, r = round(size / 8);
               the pixels that come in are 0
  cutout       a rectangle of round(H / 2) x round(W / 2) pixels (a square for square images) is set
               to 0; its centre is uniform over the image, so it may stick out of it by up to half its size

Range: the authors' code (DiffAugment_tf.py in mit-han-lab/data-efficient-gans, called in StyleGAN2's
loss on images scaled to drange_net = [-1, 1]; its BigGAN code normalises to [-1, 1] too) works on
images in [-1, 1], as this project's are, so its constants apply unchanged: brightness moves an
image by up to a quarter of the range, and the zeros that translation and cutout put in are mid-grey,
not black.  Saturation and contrast commute with any affine change of range.

The transforms below are pure functions of the images and the drawn parameters (so the tests can
compute their effect by hand); `augment` draws the parameters from the run's stateless random
streams (random_streams.RandomStreams), so a resumed run draws what the uninterrupted one would have.
Images are NHWC with static height and width: the model hands D NHWC whatever --data_format is.
"""

from runtime.tf_runtime import tf

TRANSLATION_RATIO = 0.125  # the largest shift, as a fraction of the image's height (width)
CUTOUT_RATIO = 0.5  # the hole's side, as a fraction of the image's height (width)


def _per_image(values):
    """One value per image -> shape [N, 1, 1, 1], to broadcast over an NHWC batch."""
    return tf.reshape(values, [-1, 1, 1, 1])


def brightness(images, shift):
    """x + b: each image moved by its own `shift` b."""
    return images + _per_image(shift)


def saturation(images, factor):
    """(x - mean_c x) * s + mean_c x: each pixel's colour pulled towards (s < 1) or pushed away from
    (s > 1) its grey value, the mean of its channels; a grey image is left as it is."""
    grey = tf.reduce_mean(images, axis=3, keepdims=True)
    return (images - grey) * _per_image(factor) + grey


def contrast(images, factor):
    """(x - mean x) * k + mean x: each image's deviations from its own mean value scaled by k."""
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * _per_image(factor) + mean


def _shift_along(images, offset, axis):
    """Moves each image's content by its `offset` pixels along `axis` (1: down, 2: right), zeros coming in.

    Output pixel i reads input pixel i - offset from a copy padded with one zero on both ends; a source
    outside the image is clipped onto that zero.  A gather, so the gradient flows back to the pixels kept."""
    size = images.shape[axis]
    padded = tf.pad(images, [[1, 1] if dimension == axis else [0, 0] for dimension in range(4)])
    source = tf.clip_by_value(tf.range(size)[None, :] - offset[:, None] + 1, 0, size + 1)
    return tf.gather(padded, source, axis=axis, batch_dims=1)


def translate(images, down, right):
    """Each image's content moved `down` rows and `right` columns (negative: up, left); zeros come in."""
    return _shift_along(_shift_along(images, down, axis=1), right, axis=2)


def cut_out(images, top, left, height, width):
    """Each image with the `height` x `width` rectangle from row `top` and column `left` (its own, may
    start outside the image) set to zero: the part of it inside the image."""
    def inside(start, size, length):
        positions = tf.range(length)[None, :]
        return tf.logical_and(positions >= start[:, None], positions < start[:, None] + size)

    hole = tf.logical_and(inside(top, height, images.shape[1])[:, :, None],
                          inside(left, width, images.shape[2])[:, None, :])
    return images * tf.cast(tf.logical_not(hole), images.dtype)[..., None]


def translation_limit(size):
    """r: the largest shift along a side of `size` pixels (round half up, as the authors' code)."""
    return int(size * TRANSLATION_RATIO + 0.5)


def cutout_size(size):
    """The hole's side along a side of `size` pixels (round half up, as the authors' code)."""
    return int(size * CUTOUT_RATIO + 0.5)


def _random_color(images, random):
    batch = [tf.shape(images)[0]]
    images = brightness(images, random.uniform(batch, -0.5, 0.5))
    images = saturation(images, random.uniform(batch, 0.0, 2.0))
    return contrast(images, random.uniform(batch, 0.5, 1.5))


def _random_translation(images, random):
    batch = [tf.shape(images)[0]]
    rows, columns = translation_limit(images.shape[1]), translation_limit(images.shape[2])
    return translate(images, random.integers(batch, -rows, rows + 1), random.integers(batch, -columns, columns + 1))


def _random_cutout(images, random):
    batch = [tf.shape(images)[0]]

    def start(length):
        # The centre is one of the `length` pixels, or one of `length` + 1 places for an even hole,
        # whose centre lies between pixels: either way the hole sticks out equally far at both ends.
        size = cutout_size(length)
        return random.integers(batch, 0, length + 1 - size % 2) - size // 2, size

    (top, height), (left, width) = start(images.shape[1]), start(images.shape[2])
    return cut_out(images, top, left, height, width)


# By name: config.DIFFAUGMENT_TRANSFORMS lists the same names (config reads no TensorFlow).
RANDOM_TRANSFORMS = {"color": _random_color, "translation": _random_translation, "cutout": _random_cutout}


def augment(images, policy, random):
    """`images` (NHWC, in [-1, 1]) with the transforms `policy` names ("color,translation,cutout",
    "" = none: the images themselves, nothing drawn) applied in that order, each image its own draw
    from `random` (random_streams.RandomStreams: `uniform` and `integers`, each call a stream of its own)."""
    for name in policy.split(",") if policy else ():
        images = RANDOM_TRANSFORMS[name](images, random)
    return images
