"""`clarena-demo` (also `python -m clarena`): continual learning on real digits, three ways, timed."""

import argparse
from pathlib import Path

import torch

import clarena_backbones.ops
from clarena_backbones.demo.config import DemoConfig
from clarena_backbones.demo.data import BENCHMARKS, MAX_TASKS, load_benchmark
from clarena_backbones.demo.report import MethodResult, format_header, format_method, format_summary, write_json, write_png
from clarena_backbones.demo.training import METHODS, run_method, warm_up

DESCRIPTION = """\
Train continual-learning models on scikit-learn's handwritten digits (real 8x8 images, no download)
and show what clarena is for: HAT and WSN masked backbones that do not forget, with their per-step
masking work in native kernels. Every method learns the tasks one after another with one linear head
per task, is tested on every task seen so far after each task (accuracy matrix, average accuracy,
average forgetting), and is timed on the native path and, with the same seed, on clarena's
pure-PyTorch reference path.

benchmarks:
  split     Split Digits: 5 tasks of two digits each (0/1, 2/3, ..., 8/9)
  permuted  Permuted Digits: 10 tasks of all ten digits, each task with its own fixed pixel
            permutation; task 1 keeps the original pixel order (10 times the training steps
            of split: add --epochs 5 for a run of a minute or two)
methods:
  finetune  CLMLP trained on each task in turn, no protection (the forgetting baseline)
  hat       HATMaskMLP with HAT's training step (unit masks, gradient clipping, s_max anneal)
  wsn       WSNMaskMLP with WSN's training step (weight subnetworks, earlier tasks' weights frozen)
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(_positive_int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None


# DemoConfig fields set from the command line: --field-name, its parser, its help.
_HYPERPARAMETERS = (
    ("epochs", _positive_int, "epochs per task"),
    ("batch_size", _positive_int, "training examples per step"),
    ("lr", _positive_float, "learning rate"),
    ("hidden", _int_list, "comma-separated layer widths of the backbone; the last is the feature size the heads read"),
    ("s_max", _positive_float, "HAT's largest gate scale"),
    ("clamp_threshold", _positive_float, "HAT's clamp in the embedding-gradient compensation"),
    ("mask_sparsity_reg_factor", float, "weight of HAT's mask-sparsity regulariser"),
    ("mask_percentage", _fraction, "WSN's fraction of each layer's weights (and biases) a task selects"),
    ("seed", int, "seed of the data split, the initialisation and the batch order: same seed, same results"),
)


def build_parser() -> argparse.ArgumentParser:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="clarena-demo", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--benchmark", choices=BENCHMARKS, default=defaults.benchmark, help="default: %(default)s")
    parser.add_argument(
        "--num-tasks", type=_positive_int, help="tasks to learn (default: all; split has 5, permuted 10)"
    )
    parser.add_argument(
        "--methods",
        action="append",
        metavar="NAMES",
        help=f"methods to run, comma-separated or repeated (default: {','.join(METHODS)})",
    )
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default=defaults.optimizer, help="default: %(default)s")
    for field, parse, text in _HYPERPARAMETERS:
        default = getattr(defaults, field)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else f"{default:g}"
        parser.add_argument(
            f"--{field.replace('_', '-')}",
            type=parse,
            default=default,
            metavar="SIZES" if isinstance(default, tuple) else None,
            help=f"{text} (default: {shown})",
        )
    parser.add_argument(
        "--compare-reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run every method on the pure-PyTorch reference path and compare wall times (default: on)",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch threads for the run (default: %(default)s; these small models gain nothing from more, "
        "and on a busy machine spinning threads stall each other)",
    )
    parser.add_argument("--output", type=Path, metavar="DIR", help="write results.json and results.png to DIR")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    methods = _method_names(parser, args.methods)
    config = DemoConfig(
        benchmark=args.benchmark,
        num_tasks=MAX_TASKS[args.benchmark] if args.num_tasks is None else args.num_tasks,
        optimizer=args.optimizer,
        **{field: getattr(args, field) for field, _, _ in _HYPERPARAMETERS},
    )
    try:
        tasks = load_benchmark(config.benchmark, config.num_tasks, config.seed)
    except ValueError as error:  # a task count the benchmark does not have
        parser.error(str(error))

    native = clarena_backbones.ops.native_available()
    print(format_header(config, tasks, native), end="\n\n", flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        results = [_run_and_print(name, tasks, config, args) for name in methods]
    finally:
        torch.set_num_threads(threads)  # main() may be called from other code
    print(format_summary(results))

    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        write_json(args.output / "results.json", config, tasks, native, results)
        write_png(args.output / "results.png", results)
        print(f"\nwrote {args.output / 'results.json'} and {args.output / 'results.png'}")
    return 0


def _run_and_print(name: str, tasks, config: DemoConfig, args: argparse.Namespace) -> MethodResult:
    warm_up(name, tasks, config, args.compare_reference)
    native_run, reference_run = run_method(name, tasks, config, args.compare_reference, args.progress)
    result = MethodResult(name, METHODS[name].description, native_run, reference_run)
    print(format_method(result), end="\n\n", flush=True)
    return result


def _method_names(parser: argparse.ArgumentParser, values: list[str] | None) -> list[str]:
    if not values:
        return list(METHODS)
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(names))  # the order given, without repeats
