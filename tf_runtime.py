"""Imported first by every entry point, before anything imports TensorFlow.

* oneDNN is off by default on some CPUs (AMD) and turning it on roughly halved
  the step time here, so it is enabled unless the user set the variable.
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
