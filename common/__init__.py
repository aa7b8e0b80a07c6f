"""The package every script shares, laid out by job.

Ground modules (no torch; report.py and the shell scripts' helpers read runs through these alone):
- argtypes.py: argparse `type=` checkers;
- facts.py: the study's constants (regimes, fusions, noise levels, the flags' choices);
- flags.py: every training flag and every named recipe, one entry each;
- io.py: atomic writes, locks, figure saving;
- runfolder.py: a run folder's layout and readers of its files;
- figures.py: the figures a run and evaluate.py draw (matplotlib).

Packages, each a job: data/ (sources, the pairing recipe, cache, augmentation, a user's own files),
nets/ (featurizers, fusions, assembled models, contrastive losses), training/ (the flags parsed, a
run's life, the loop's helpers, what a finished run writes), evaluation/ (robustness, the fusion map,
frozen-feature probes) and report/ (runs read into tables, statistics and figures).
"""
