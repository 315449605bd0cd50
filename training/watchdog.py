"""The collapse watchdog: says so when a GAN run goes wrong, while it happens.

A DCGAN can train on for hundreds of steps after D saturates or G collapses
to one image, and nothing in the losses says so plainly.  The watchdog reads
the scalars every step already computes and raises an alarm when one of
these holds for `patience` steps in a row:

  d_saturated      D(G(z)) < 0.01 or D(x) > 0.99: D rejects every fake, G's
                   gradient vanishes (probability losses only);
  d_not_learning   d_loss within 0.01 of 2·ln 2 while D(x) and D(G(z)) sit
                   at 0.5: D has stopped telling real from fake (cross
                   entropy losses only; checked over a longer window);
  low_diversity    the fake batch's mean pairwise distance is under a third
                   of the real batch's: the generator is collapsing (judged
                   after `warmup` steps: an untrained G's samples are alike);
  near_duplicates  over MAX_NEAR_DUPLICATES of the fake pairs are closer than
                   the real batch's NEAR_DUPLICATE_QUANTILE pair distance
                   (real data: about that quantile): G repeats a few images.
                   A mean distance misses this when those few images differ
                   from each other, or carry noise (after `warmup` steps);
  exploding        a gradient norm over 100 times its running median, or
                   not finite.

Each alarm fires once when it starts and re-arms after the condition has
cleared, or after `reset` (the run rolled back to an earlier checkpoint).
It is pure Python on floats, so tests drive it directly.
"""

import collections
import dataclasses
import math
import statistics

SATURATED_LOW, SATURATED_HIGH = 0.01, 0.99
CHANCE_LOSS = 2 * math.log(2)
CHANCE_TOLERANCE = 0.01
MIN_DIVERSITY = 1 / 3
NEAR_DUPLICATE_QUANTILE = 0.02
MAX_NEAR_DUPLICATES = 0.2
EXPLOSION_FACTOR = 100.0
# Measured on unconditional MNIST (docs/ablation.md): resize + convolution kept 8-10 classes where
# transposed convolutions kept 1-7; --minibatch_stddev, --spectral_norm and --d_head gap did not help.
COLLAPSE_ADVICE = ("Try --g_upsample resize_conv (it kept unconditional MNIST's classes where transposed "
                   "convolutions collapsed: docs/ablation.md) or a lower G learning rate")
# An untrained G's samples are alike (near-duplicates 1.0 at step 10 on MNIST and CelebA alike), so the
# diversity checks wait.  Healthy conditional MNIST/Fashion-MNIST runs were under 0.12 near-duplicates
# by step 50; CelebA runs still at 0.7-1.0 at step 100 fail issue 14's "diverse from step 100" and
# should be told (docs/ablation.md).  The earlier 200 hid them.
DIVERSITY_WARMUP_STEPS = 100


@dataclasses.dataclass
class Alarm:
    kind: str
    step: int
    message: str
    since: int  # the first step of the streak that fired it: --on_collapse rollback goes back before it


class CollapseWatchdog:
    def __init__(self, probability_loss, cross_entropy_loss, patience=20, chance_patience=200,
                 warmup=DIVERSITY_WARMUP_STEPS, window=100):
        self.probability_loss = probability_loss
        self.warmup = warmup
        self.cross_entropy_loss = cross_entropy_loss
        self.patience = {"d_saturated": patience, "low_diversity": patience,
                         "near_duplicates": patience, "exploding": 1,
                         "d_not_learning": chance_patience}
        self.streak = collections.Counter()
        self.streak_start = {}  # kind -> first step of its running streak
        self.firing = set()
        self.norms = {"d_grad_norm": collections.deque(maxlen=window), "g_grad_norm": collections.deque(maxlen=window)}

    def reset(self):
        """Forgets every streak and the recent gradient norms, as at the start of a run:
        after --on_collapse rollback the collapsed steps it counted never happened."""
        self.streak.clear()
        self.streak_start.clear()
        self.firing.clear()
        for history in self.norms.values():
            history.clear()

    def _conditions(self, step, stats):
        """{kind: message or None} for this step's scalars."""
        conditions = {}
        if self.probability_loss:
            d_real, d_fake = stats["d_real"], stats["d_fake"]
            saturated = d_fake < SATURATED_LOW or d_real > SATURATED_HIGH
            conditions["d_saturated"] = saturated and (
                f"D is saturated: D(x) {d_real:.3f}, D(G(z)) {d_fake:.4f}; G gets almost no gradient. "
                "Try --label_flip 0.05, --real_label 0.9, --instance_noise 0.1 or a lower D learning rate")
        if self.cross_entropy_loss:
            at_chance = abs(stats["d_loss"] - CHANCE_LOSS) < CHANCE_TOLERANCE
            conditions["d_not_learning"] = at_chance and (
                f"D has stopped discriminating: d_loss {stats['d_loss']:.4f} ≈ 2·ln 2, D(x) {stats['d_real']:.3f}, "
                f"D(G(z)) {stats['d_fake']:.3f}; G learns nothing from it. "
                "Try a faster D: --d_learning_rate 0.0004 (TTUR fixed this on MNIST: docs/ablation.md)")
        conditions["low_diversity"] = step > self.warmup and stats["diversity"] < MIN_DIVERSITY and (
            f"low diversity: fake samples are {stats['diversity']:.2f}x as far apart as real ones; "
            f"G may be collapsing. {COLLAPSE_ADVICE}")
        near_duplicates = stats["near_duplicates"]
        conditions["near_duplicates"] = step > self.warmup and near_duplicates > MAX_NEAR_DUPLICATES and (
            f"near-duplicates: {near_duplicates:.0%} of fake pairs are closer than the closest "
            f"{NEAR_DUPLICATE_QUANTILE:.0%} of real pairs; G is repeating a few images (mode collapse). "
            f"{COLLAPSE_ADVICE}")
        exploded = []
        for name, history in self.norms.items():
            if name not in stats:
                continue
            value = stats[name]
            typical = statistics.median(history) if len(history) >= 10 else math.inf
            if not math.isfinite(value) or value > EXPLOSION_FACTOR * typical:
                exploded.append(f"{name.split('_')[0].upper()} gradient norm {value:.3g}")
            else:
                history.append(value)
        conditions["exploding"] = bool(exploded) and (
            f"exploding gradients: {', '.join(exploded)} (over {EXPLOSION_FACTOR:.0f}x the recent median). "
            "Try a lower --learning_rate")
        return conditions

    def observe(self, step, stats):
        """Takes one step's scalars; returns the alarms that start at this step."""
        alarms = []
        for kind, message in self._conditions(step, stats).items():
            if not message:
                self.streak[kind] = 0
                self.streak_start.pop(kind, None)
                self.firing.discard(kind)
                continue
            self.streak[kind] += 1
            self.streak_start.setdefault(kind, step)
            if self.streak[kind] >= self.patience[kind] and kind not in self.firing:
                self.firing.add(kind)
                alarms.append(Alarm(kind, step, f"step {step}: {message} ({self.streak[kind]} steps in a row)",
                                    since=self.streak_start[kind]))
        return alarms

    @property
    def earliest_streak_start(self):
        """The first step of the oldest streak still running (None when every condition is clear): a
        checkpoint saved before it is one that --on_collapse rollback may need, whichever streak fires."""
        return min(self.streak_start.values(), default=None)
