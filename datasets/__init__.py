"""Reading data: file formats and the tf.data input pipeline."""
