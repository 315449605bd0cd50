"""Training: the loop, losses, guarded updates and stabilisers, the watchdog, checkpoints, replicas."""
