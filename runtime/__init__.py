"""Process set-up every part shares: TensorFlow's environment and the project's error types."""
