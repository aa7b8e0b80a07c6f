"""Training throughput: the project's step against an exam-style loop, and the matmul peaks.

Not a test: it prints a Markdown table and writes JSON. In one process, one
configuration after another (never two at once), it times:

- the project's own training step (in-memory tensors indexed by shuffled batch
  indices, the project's Dropout and phase-split first audio conv, fused Adam,
  bf16 autocast or fp32) for image-only, audio-only and concat fusion, at each
  precision this machine can run;
- the exam-style peer: a per-sample torch.utils.data.Dataset and a DataLoader
  (default collate, batch 64, shuffle, num_workers=0), float32, nn.Dropout,
  plain nn.Conv1d and torch.optim.Adam with its defaults, on the same
  architecture and parameter count. This is what a Lightning loop runs
  underneath;
- the float32 and bf16 peak of a 2048 x 2048 matmul;
- on request (--recipes stable), the project's step under another --recipe (AdamW with its
  parameter groups, the warm-up and cosine schedule, gradient clipping), beside the exam's Adam;
- on request (--models), the log-mel audio front-end (audio-mel, concat-mel) at its
  default channels and at a quarter of them (-lean), in the project's loop only; its
  FLOP count leaves out the STFT, which the counter does not see.

FLOPs per training sample are counted by torch.utils.flop_counter over one
forward and backward pass (matmuls and convolutions), so achieved GFLOP/s can
be set against the peak of the precision used. The inputs are random tensors
of the real shapes: the speed of these models does not depend on the values.

    python bench/throughput.py --quick          # under two minutes
    python bench/throughput.py --out docs/throughput.json
"""
import argparse
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.training.cli import apply_recipes, training_parser  # noqa: E402
from common.data import Split, batch_indices, shuffle_order  # noqa: E402
from common.io import save_json  # noqa: E402
from common.nets.featurizers import count_parameters  # noqa: E402
from common.nets.layers import Dropout, PhaseSplitConv1d  # noqa: E402
from common.nets.models import build_from_config  # noqa: E402
from common.flags import RECIPES  # noqa: E402
from common.training.loop import (autocast, batch_inputs, clip_gradients, cpu_has_native_bf16, make_optimizer,  # noqa: E402
                                  make_schedule)

BATCH = 64
VIEWS = {"image": ("image",), "audio": ("audio",), "concat": ("image", "audio"),
         # the log-mel audio front-end (--audio-frontend mel), at its default and at a quarter of its channels
         "audio-mel": ("audio",), "audio-mel-lean": ("audio",), "concat-mel": ("image", "audio"),
         "concat-mel-lean": ("image", "audio")}
EXAM_MODELS = ("image", "audio", "concat")  # the ones with an exam-style peer loop to time


def build(model_name):
    """The named model as a training script builds it: build_from_config on the flags its run records
    (image, audio, a fusion; -mel: --recipe mel; -mel-lean: --recipe mel-lean)."""
    base, mel, lean = model_name.partition("-mel")
    args = dict(RECIPES["mel-lean" if lean == "-lean" else "mel"].flags) if mel else {}
    if base in ("image", "audio"):
        return build_from_config({"model": base, "args": args})
    return build_from_config({"model": "multimodal", "args": {"fusion": base, **args}})


def exam_style(model):
    """The same network with torch's stock layers: nn.Dropout, plain nn.Conv1d (weights copied)."""
    for name, child in list(model.named_children()):
        if isinstance(child, Dropout):
            setattr(model, name, nn.Dropout(child.p))
        elif isinstance(child, PhaseSplitConv1d):
            plain = nn.Conv1d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                              padding=child.padding)
            plain.load_state_dict(child.state_dict())
            setattr(model, name, plain)
        else:
            exam_style(child)
    return model


def random_split(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Split(image=torch.rand(n, 1, 28, 28, generator=g), audio=0.1 * torch.randn(n, 1, 8000, generator=g),
                 label=torch.randint(0, 10, (n,), generator=g))


class PairDataset(torch.utils.data.Dataset):
    """One sample at a time, as the exam's Lightning data module serves them."""

    def __init__(self, split, views):
        self.split, self.views = split, views

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        return tuple(getattr(self.split, v)[i] for v in self.views) + (self.split.label[i],)


def recipe_flags(recipe):
    """The flags a training script has under --recipe, at its defaults otherwise (its own parser)."""
    parser, argv = training_parser("multimodal", __doc__), ["--recipe", recipe]
    return apply_recipes(parser.parse_args(argv), parser, "multimodal", argv)


def project_steps(model_name, precision, split, seed, recipe="exam"):
    """A generator of training steps exactly as the train_*.py loops take them (under --recipe)."""
    torch.manual_seed(seed)
    device = torch.device("cpu")
    model = build(model_name)
    model.train()
    flags = recipe_flags(recipe)
    optimizer = make_optimizer(model, flags)  # the exam's: make_adam, as the scripts build it
    schedule = make_schedule(optimizer, flags, len(split) // BATCH)
    views = VIEWS[model_name]
    order_gen = torch.Generator().manual_seed(seed)
    while True:
        for index in batch_indices(shuffle_order(torch.arange(len(split)), order_gen), BATCH):
            if len(index) < BATCH:
                continue
            inputs = batch_inputs(split, index, views, device)
            label = split.label[index]
            with autocast(precision, device):
                logits = model(*inputs)
            loss = F.cross_entropy(logits.float(), label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(model, flags.clip_grad)
            schedule.step()
            optimizer.step()
            yield len(index)


def peer_steps(model_name, split, seed):
    """The exam-style loop: DataLoader over a per-sample Dataset, stock layers, fp32, Adam defaults."""
    torch.manual_seed(seed)
    model = exam_style(build(model_name))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(PairDataset(split, VIEWS[model_name]), batch_size=BATCH, shuffle=True,
                                         num_workers=0, drop_last=True)
    while True:
        for *inputs, label in loader:
            loss = F.cross_entropy(model(*inputs), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            yield len(label)


def flops_per_sample(model_name, precision):
    """Forward + backward FLOPs of one training sample (matmuls and convolutions), counted."""
    model = build(model_name)
    split = random_split(BATCH, seed=1)
    inputs = batch_inputs(split, torch.arange(BATCH), VIEWS[model_name], torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        with autocast(precision, torch.device("cpu")):
            logits = model(*inputs)
        F.cross_entropy(logits.float(), split.label).backward()
    return counter.get_total_flops() / BATCH


def samples_per_second(steps, seconds, warmup=3):
    """Run `warmup` steps, then steps for about `seconds`; samples per second of the timed part."""
    for _ in range(warmup):
        next(steps)
    n, start = 0, time.perf_counter()
    while True:
        n += next(steps)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def profile_step(model_name, precision, split, steps=10):
    """Where one training step's time goes: the top operators of torch.profiler, as Markdown rows."""
    from torch.profiler import profile
    run = project_steps(model_name, precision, split, seed=0)
    for _ in range(3):
        next(run)
    with profile(record_shapes=True) as prof:
        for _ in range(steps):
            next(run)
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = []
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]:
        shapes = ", ".join(str(list(s)) for s in e.input_shapes[:2] if s) if e.input_shapes else ""
        rows.append(f"| {e.key} | {shapes} | {e.self_cpu_time_total / 1e3 / steps:.1f} | "
                    f"{100 * e.self_cpu_time_total / total:.0f}% |")
    head = [f"Profile of the {model_name} step at {precision} ({steps} steps of batch {BATCH}): "
            f"{total / 1e3 / steps:.1f} ms of operator time per step", "",
            "| operator | first input shapes | ms / step | share |", "|---|---|---:|---:|"]
    return head + rows


def matmul_peak(dtype, seconds):
    a = torch.randn(2048, 2048).to(dtype)
    b = torch.randn(2048, 2048).to(dtype)
    for _ in range(3):
        a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048 ** 3 * n / (time.perf_counter() - start) / 1e9


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one short timing per configuration (under two minutes)")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per repeat (default 8, quick 3)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per configuration, median kept (default 3, quick 1)")
    p.add_argument("--models", nargs="+", default=["image", "audio", "concat"], choices=list(VIEWS))
    p.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"],
                   help="precisions of the project's step (default: fp32, and bf16 where the CPU has it natively)")
    p.add_argument("--recipes", nargs="+", default=["exam"],
                   choices=[n for n, r in RECIPES.items() if "image" in r.scripts],
                   help="--recipe of the project's step (default: exam; e.g. exam stable to time both)")
    p.add_argument("--num-threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default="runs/bench/throughput.json", help="where the JSON goes")
    p.add_argument("--profile", action="store_true",
                   help="also profile the concat step at the last of the precisions (bf16 where native) and print its top operators")
    args = p.parse_args()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    repeats = args.repeats or (1 if args.quick else 3)
    native_bf16 = cpu_has_native_bf16()
    precisions = args.precisions or (["fp32", "bf16"] if native_bf16 else ["fp32"])
    split = random_split(2048)

    peak = {"fp32": matmul_peak(torch.float32, seconds), "bf16": matmul_peak(torch.bfloat16, seconds)}
    rows = []

    def timed(label, make_steps):
        runs = []
        for r in range(repeats):
            runs.append(samples_per_second(make_steps(r), seconds))
        value = statistics.median(runs)
        print(f"  {label}: {value:.0f} samples/s" + (f" (repeats {', '.join(f'{x:.0f}' for x in runs)})"
                                                      if repeats > 1 else ""), file=sys.stderr, flush=True)
        return value, runs

    for model_name in args.models:
        params = count_parameters(build(model_name))
        flops = flops_per_sample(model_name, "fp32")
        peer = None  # the mel models are not the exam's: no exam-style loop to set them against
        if model_name in EXAM_MODELS:
            peer, peer_runs = timed(f"{model_name} exam-style fp32", lambda r: peer_steps(model_name, split, r))
            rows.append({"model": model_name, "loop": "exam-style", "precision": "fp32", "samples_per_s": peer,
                         "repeats": peer_runs, "params": params, "flops_per_sample": flops,
                         "gflops": peer * flops / 1e9, "peak_fraction": peer * flops / 1e9 / peak["fp32"],
                         "vs_peer": 1.0})
        for precision in precisions:
            for recipe in args.recipes:
                loop = "project" if recipe == "exam" else f"project, recipe {recipe}"
                value, runs = timed(f"{model_name} {loop} {precision}",
                                    lambda r: project_steps(model_name, precision, split, r, recipe))
                rows.append({"model": model_name, "loop": loop, "precision": precision, "samples_per_s": value,
                             "repeats": runs, "params": params, "flops_per_sample": flops,
                             "gflops": value * flops / 1e9, "peak_fraction": value * flops / 1e9 / peak[precision],
                             "vs_peer": value / peer if peer else None})

    machine = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "native_bf16": native_bf16, "torch": torch.__version__, "python": platform.python_version(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    result = {"machine": machine, "batch_size": BATCH, "seconds_per_repeat": seconds, "repeats": repeats,
              "quick": args.quick, "matmul_peak_gflops": peak, "rows": rows}
    try:
        save_json(result, args.out)
    except OSError as e:
        print(f"error: cannot write {args.out}: {e}", file=sys.stderr)
        return 2

    print(f"{machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), native bf16: {'yes' if native_bf16 else 'no'}")
    print(f"2048x2048 matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s\n")
    print("| model | loop | precision | params | samples/s | x exam-style | MFLOP/sample | GFLOP/s | % of peak |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        vs_peer = "–" if r["vs_peer"] is None else f"{r['vs_peer']:.2f}"
        print(f"| {r['model']} | {r['loop']} | {r['precision']} | {r['params']:,} | {r['samples_per_s']:.0f} | "
              f"{vs_peer} | {r['flops_per_sample'] / 1e6:.0f} | {r['gflops']:.0f} | {100 * r['peak_fraction']:.0f}% |")
    if args.profile:
        print("\n" + "\n".join(profile_step("concat", precisions[-1], split)))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
