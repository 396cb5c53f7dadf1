"""The benchmark groups on a CUDA device, with the achieved memory bandwidth of the memory-bound ones.

Builds every workload of `workloads.py` (WSN gate per layer size and over every layer of a ResNet-18, HAT adjustment over all layers
against one `mul_` pass, measure materialisation, HAT/WSN MLP and ResNet-18 training steps against
the plain backbones, test-stage forwards) with the device as torch's default device, times each
with CUDA events (median of the rounds after warm-up) and prints a Markdown table; `--json` also
writes the results. Bandwidth is the group's unavoidable traffic over the median time: one read
and one write of the scores (gate), of the gradients (adjustment), one write of the measure.

    python benchmarks/cuda_report.py --output report.md --json results.json
    python benchmarks/cuda_report.py --list        # the selection, without running anything
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

import timing
import workloads as wl

FLOAT_BYTES = torch.finfo(wl.DTYPE).bits // 8
ALL_LAYERS_GATE = "percentile_mask every layer of WSNMaskResNet18"


def every_layer_gate(impl: str) -> wl.Workload:
    """WSN's gate on every weight and bias score of a ResNet-18, as one training step computes it."""
    from clarena import ops

    backbone = wl.build_backbone("WSNMaskResNet18")
    scores = [module.weight for table in (backbone.weight_score_t, backbone.bias_score_t) for module in table.values()]

    def fn() -> None:
        for score in scores:
            ops.percentile_mask(score, wl.KEEP)

    numel = sum(score.numel() for score in scores)
    return wl.Workload(fn, impl, f"{len(scores)} scores, {numel} elements", info={"score_elements": numel})


def selection() -> dict[tuple[str, str], object]:
    """(group, impl) -> workload builder: the CPU suite's workloads and the every-layer gate."""
    table = dict(wl.all_workloads())
    for impl in ("reference", "native"):
        table[(ALL_LAYERS_GATE, impl)] = lambda i=impl: every_layer_gate(i)
    return table


def traffic_bytes(group: str, workload: wl.Workload) -> int | None:
    """Bytes a memory-bound group must move at least; None for the compute-bound steps."""
    if group == ALL_LAYERS_GATE:
        return 2 * workload.info["score_elements"] * FLOAT_BYTES
    if group.startswith("percentile_mask"):
        size = group.split("n=")[1]
        return 2 * wl.PERCENTILE_SIZES[size] * FLOAT_BYTES
    if group.startswith("hat_adjustment"):
        return 2 * workload.info["grad_elements"] * FLOAT_BYTES
    if group.startswith("parameter_measure"):
        kind = group.removeprefix("parameter_measure ")
        return torch.Size(wl.MEASURE_SHAPES[kind]).numel() * FLOAT_BYTES
    return None


def median_seconds(workload: wl.Workload, device: torch.device, rounds: int, warmup: int) -> float:
    def timed() -> float:
        if device.type != "cuda":
            return timing.timed_call(workload)
        if workload.setup is not None:
            workload.setup()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        workload.fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    with workload.path():
        for _ in range(warmup):
            timed()
        return statistics.median(timed() for _ in range(rounds))


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    results = []
    for (group, impl), build in selection().items():
        if args.keyword and args.keyword not in f"{group} {impl}":
            continue
        torch.manual_seed(0)
        with torch.device(device):
            workload = build()
            seconds = median_seconds(workload, device, args.rounds, args.warmup)
        traffic = traffic_bytes(group, workload)
        results.append({"group": group, "impl": impl, "shape": workload.shape, "median_s": seconds,
                        "bandwidth_GBps": traffic / seconds / 1e9 if traffic else None})
        print(f"  {group:45s} {impl:28s} {seconds * 1e3:10.3f} ms", file=sys.stderr)
    return results


def table(results: list[dict], device_name: str) -> str:
    """Markdown: one row per workload, with the ratio to the group's native (or plain) row."""
    lines = [f"Benchmarks on {device_name}, torch {torch.__version__}, float32", "",
             "| group | impl | median | vs native / plain | achieved bandwidth |", "|---|---|---|---|---|"]
    baseline = {}
    for row in results:
        if row["impl"] in ("native", "plain"):
            baseline.setdefault(row["group"], row["median_s"])
    for row in results:
        base = baseline.get(row["group"])
        ratio = f"{row['median_s'] / base:.2f}x" if base else "-"
        bandwidth = f"{row['bandwidth_GBps']:.1f} GB/s" if row["bandwidth_GBps"] else "-"
        lines.append(f"| {row['group']} | {row['impl']} | {row['median_s'] * 1e3:.3f} ms | {ratio} | {bandwidth} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/cuda_report.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="device to run on (cpu for a dry run of the script)")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds per workload")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("-k", dest="keyword", default=None, help="only workloads whose 'group impl' contains this")
    parser.add_argument("--output", type=Path, default=None, help="write the Markdown table here too")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--list", action="store_true", help="list the selected workloads and exit")
    args = parser.parse_args(argv)
    if args.list:
        for group, impl in selection():
            if not args.keyword or args.keyword in f"{group} {impl}":
                print(f"{group} | {impl}")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("cuda_report: no CUDA device visible to torch", file=sys.stderr)
        return 3
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    results = run(args)
    text = table(results, device_name)
    print(text)
    if args.output:
        args.output.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "torch": torch.__version__, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
