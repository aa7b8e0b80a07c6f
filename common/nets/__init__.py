"""The networks, and nothing of runs or data files.

- featurizers.py: the exam's Conv2Net (image) and Conv1Net (audio), each a featurizer to 128-d plus
  fc(128 -> 10); layers.py: the faster stand-ins for dropout, the strided first audio conv and 2x2
  max pooling that they use (same parameters and results);
- mel.py: the log-mel audio front-end (--audio-frontend mel), computed inside the model;
- fusions.py: the nine fusion methods, one class each, in a registry;
- models.py: the assembled networks (multimodal with a fusion, late fusion, the contrastive model with
  its projection heads), modality dropout's stand-ins, and rebuilding a run's network from its config;
- losses.py: the contrastive losses NT-Xent and NT-Log (SigLIP) and their temperature.
"""
