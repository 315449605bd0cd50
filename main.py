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
from runtime import options
from runtime.errors import UserError
from runtime.tf_runtime import tf  # first: sets up TensorFlow's environment before it loads

flags = tf.compat.v1.flags
FLAGS = flags.FLAGS

def define_flags(flag_values=FLAGS):
    """One flag per Config field, with the default and --help text its declaration gives (config.py)."""
    for field in dataclasses.fields(config_lib.Config):
        name, default, help_text = field.name, field.default, options.help_text(field)
        if default is None:  # an on/off flag whose default depends on the dataset (resolve() fills it in)
            flags.DEFINE_boolean(name, None, help_text, flag_values=flag_values)
        elif isinstance(default, bool):
            flags.DEFINE_boolean(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


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
