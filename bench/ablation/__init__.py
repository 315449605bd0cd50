"""Which training recipe should be the default?  Each recipe trained at the same budget, scored by the same meter.

Every (dataset, recipe, seed, budget) run trains `main.py --train` in a subprocess
outside the repository, timing each saved checkpoint from the launch of the
process (what a user waits for, start-up included) and counting the collapse
watchdog's warnings; then each checkpoint is scored in this process by
`evaluation.QualityMeter` (the dataset's domain classifier: FID, KID,
precision/recall and class statistics; CIFAR-10's classifier is trained on the
shared lossy JPEG copy, extracted under --work_dir).  CelebA has no feature network offline
(no Inception weights), so its checkpoints are scored by the diversity of 256
samples against 256 real faces in pixel space (`score.diversity_scores`), and as faces:
FD_face (dlib ResNet-128 embeddings) and the face detection rate of 500 samples
against the first 500 real faces (`score.face_scores`, evaluation/faces.py).  One JSON line per finished run is
appended to docs/ablation/results.jsonl, and a run already there is skipped,
so the table can be completed across sessions; `render` rewrites
docs/ablation.md and its charts from that file alone.

    python -m bench.ablation run --dataset mnist --recipes all --seeds 1 --budget 25000
    python -m bench.ablation run --dataset mnist --recipes default,ttur --seeds 1,2,3 --budget 25000
    python -m bench.ablation run --dataset celebA --recipes default,ttur --seeds 1,2,3 --budget 19200
    python -m bench.ablation run --dataset cifar10 --recipes default,resize_conv --seeds 1 --budget 25000
    python -m bench.ablation render
    python -m bench.ablation compare_average --dataset celebA --recipes default --seeds 1 --budget 32000
      (the same checkpoints scored from G itself and from its --g_ema moving average; prints a table)

Every recipe trains with batch 64, so images seen and steps mean the same thing
across rows: dcgan_paper's 128 is overridden to 64 (its other flags are kept).
A step consumes d_steps batches, so a budget of B images is B / (64 x d_steps) steps.

plan.py says what each run is (recipes, datasets, steps, flags), run.py trains
and records, score.py scores checkpoints, render.py writes the doc, and
__main__.py is the command line.
"""
