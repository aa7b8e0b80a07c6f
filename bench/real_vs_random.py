"""Is a training step slower on the real data than on random tensors of the same shapes? (denormals?)

Times the project's concat training step on batches of the real avdigits training pairs and on
random tensors of the same shapes, with torch's flush-denormal mode off and on, at each precision.
A one-off check for docs/PERFORMANCE.md, not a test: needs the real data (AVDIGITS_DATA or --data-root).

    python bench/real_vs_random.py --data-root ../shared/data
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.throughput import project_steps, random_split, samples_per_second  # noqa: E402
from common.data import load_dataset  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="raw data root (default: $AVDIGITS_DATA)")
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per configuration")
    args = p.parse_args()
    real = load_dataset("avdigits", args.data_root).train.subset(torch.arange(4096))
    fake = random_split(4096)
    print("| data | precision | flush denormals | samples/s |\n|---|---|---|---:|")
    for precision in ("fp32", "bf16"):
        for flush in (False, True):
            for name, split in (("real", real), ("random", fake)):
                torch.set_flush_denormal(flush)
                speed = samples_per_second(project_steps("concat", precision, split, seed=0), args.seconds)
                print(f"| {name} | {precision} | {'on' if flush else 'off'} | {speed:.0f} |", flush=True)
    torch.set_flush_denormal(False)


if __name__ == "__main__":
    main()
