"""Measuring finished runs (evaluate.py, evaluate_contrastive.py).

- robustness.py: noise sweeps of each view, a missing view, a fresh draw of the test split, and the
  fusion map (--grid), all rendered with the data recipe's own noise functions from seeded streams;
- label_efficiency.py: probes and fine-tuning at a few labels, and the floors they are read against;
- malloc.py: keep freed memory for reuse (evaluation allocates thousands of same-sized tensors).
"""
