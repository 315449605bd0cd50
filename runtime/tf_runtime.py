"""Imported first by every entry point, before anything imports TensorFlow.

* oneDNN is off by default on some CPUs (AMD) and turning it on made the 64x64
  DCGAN step 3.7x faster here (1.5x for MNIST; bench/step_time.py, table in the
  README), so it is enabled unless the user set the variable.
* TF's C++ runtime writes absl/oneDNN banners straight to file descriptor 2
  while loading, ignoring TF_CPP_MIN_LOG_LEVEL; the import runs with fd 2
  pointed at /dev/null so the project's own one-line errors are not buried.
  Python exceptions raised by the import are unaffected.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly():
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
    return tensorflow


tf = _import_tensorflow_quietly()
tf.compat.v1.disable_eager_execution()
tf.get_logger().setLevel("WARNING")  # e.g. "Restoring parameters from ..." on every restore


def cpu_flags():
    """The CPU feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bfloat16():
    """AVX512_BF16 or AMX: oneDNN then runs bfloat16 matmuls and convolutions
    natively (about twice the float32 rate measured on a Zen 4); elsewhere it
    emulates them, slower than float32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def session_config(xla=False, precision="float32"):
    """Session options shared by every session that trains something.

    Soft placement so one graph runs on CPU or GPU.  Grappler's remapper fails
    on LeakyReLU gradients here ("Mutation::Apply error"), logging an error and
    making the 64x64 DCGAN step ~1.8x slower (bench/step_time.py); the math is the
    same without it.  `precision` "float16" (GPU) or "bfloat16" (oneDNN CPUs)
    turns on Grappler's mixed-precision rewrite for this session only: weights
    stay float32 and no other graph of the process is affected.
    """
    session = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    session.gpu_options.allow_growth = True
    rewrite = session.graph_options.rewrite_options
    rewrite.remapping = rewrite.OFF
    if precision == "float16":
        rewrite.auto_mixed_precision = rewrite.ON
    elif precision == "bfloat16":
        rewrite.auto_mixed_precision_onednn_bfloat16 = rewrite.ON
    if xla:
        session.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.ON_1
    return session
