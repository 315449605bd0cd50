"""Training: the loop, losses, guarded updates, random streams and stabilisers, the watchdog and its diversity
measures, checkpoints, replicas, and G as it is sampled (inference.py)."""
