"""runtime/tf_runtime.py: the session options every training session gets (mixed precision stays inside the
training session) and whether the CPU runs bfloat16 natively."""

import tensorflow as tf
from conftest import tiny_config

from runtime import tf_runtime
from training import train


def test_mixed_precision_is_confined_to_the_training_session(tmp_path):
    train.train(tiny_config(tmp_path, mixed_precision=True))
    assert not tf.config.optimizer.get_experimental_options().get("auto_mixed_precision")


def test_session_options_turn_on_only_the_rewrite_each_precision_asks_for():
    plain = tf_runtime.session_config()
    rewrite = plain.graph_options.rewrite_options
    assert plain.allow_soft_placement and rewrite.remapping == rewrite.OFF  # the remapper fails on LeakyReLU grads
    assert rewrite.ON not in (rewrite.auto_mixed_precision, rewrite.auto_mixed_precision_onednn_bfloat16)
    float16 = tf_runtime.session_config(precision="float16").graph_options.rewrite_options
    assert float16.auto_mixed_precision == rewrite.ON and float16.auto_mixed_precision_onednn_bfloat16 != rewrite.ON
    bfloat16 = tf_runtime.session_config(precision="bfloat16").graph_options.rewrite_options
    assert bfloat16.auto_mixed_precision_onednn_bfloat16 == rewrite.ON and bfloat16.auto_mixed_precision != rewrite.ON
    jit = tf.compat.v1.OptimizerOptions.ON_1
    assert plain.graph_options.optimizer_options.global_jit_level != jit
    assert tf_runtime.session_config(xla=True).graph_options.optimizer_options.global_jit_level == jit


def test_bfloat16_is_native_with_either_cpu_flag_only(monkeypatch):
    for flags, native in (({"avx2", "avx512f"}, False), ({"avx512_bf16"}, True), ({"amx_bf16"}, True), (set(), False)):
        monkeypatch.setattr(tf_runtime, "cpu_flags", lambda flags=flags: flags)
        assert tf_runtime.cpu_has_bfloat16() is native, flags
