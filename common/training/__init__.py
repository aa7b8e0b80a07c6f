"""A training run around the loop each train_*.py writes out.

- cli.py: the parsers made from the flag table (common/flags.py), the recipes applied, the one-line
  error exit;
- lifecycle.py: a run's life: its folder (new, or resumed with its saved flags), device, precision and
  data, the splits, and Progress (config.json, last.pt / best.pt, the epoch line, Ctrl-C);
- loop.py: what a loop step needs: seeding, autocast, the optimizer and schedule, early stopping,
  evaluation, checkpoints that load with weights_only=True;
- finish.py: what a finished run writes: metrics.json, figures, test predictions, TensorBoard extras;
- diagnostics.py: --log-diagnostics (gradient norms, dead units, attention entropy);
- init_from.py: --init-from, featurizer weights from another run's checkpoint;
- retrieval.py: what a contrastive model learned: retrieval and linear probes on its features (each epoch's
  validation, the finished run, evaluate_contrastive.py).
"""
