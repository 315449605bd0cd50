"""`python -m bench.ablation run | render | compare_average` (see bench/ablation/__init__.py)."""

import argparse

from bench import ablation, harness
from bench.ablation.plan import DATASETS, RECIPES
from bench.ablation.render import render
from bench.ablation.run import RESULTS_PATH, command_run, read_results
from bench.ablation.score import command_compare_average
from runtime.errors import run_command


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.ablation", description=ablation.__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and score the runs not yet in the results file, then render")
    run.add_argument("--dataset", default="mnist", help=f"comma-separated: {', '.join(DATASETS)}")
    run.add_argument("--recipes", default="all", help=f"'all' or comma-separated: {', '.join(RECIPES)}")
    run.add_argument("--seeds", default="1", help="comma-separated seeds")
    run.add_argument("--budget", type=int, default=25000, help="training images seen per run")
    run.add_argument("--eval_samples", type=int, default=5000, help="generated (and real) images per score")
    run.add_argument("--data_dir", default=str(harness.SHARED_DATA))
    run.add_argument("--work_dir", default="/tmp/ablation",
                     help="runs, the classifiers and cached real statistics (outside the repository)")
    compare = commands.add_parser(
        "compare_average", parents=[run], add_help=False, conflict_handler="resolve",
        help="score finished runs' checkpoints twice, G itself and its --g_ema average, and print the table")
    compare.add_argument("--recipes", default="default", help="comma-separated recipes trained with --g_ema")
    commands.add_parser("render", help="rewrite docs/ablation.md and its charts from the results file")
    args = parser.parse_args(argv)
    if args.command == "run":
        command_run(args)
    elif args.command == "compare_average":
        command_compare_average(args)
    else:
        render(read_results(RESULTS_PATH))
    return 0


if __name__ == "__main__":
    run_command(main)
