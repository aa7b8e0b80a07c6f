"""report.py's machinery, laid out along its pipeline; nothing here imports torch.

read (run folders -> run dicts, contrastive rows, probes; common/runfolder.py opens the files)
-> group (runs -> rows over seeds; settings.py says which runs share a row)
-> stats (pure: numbers in, numbers out)
-> render: markdown.py and tables_csv.py (the results table's columns from columns.py), figures.py;
contrastive.py holds Problem 2's sections (the sweep, label efficiency, few labels, retrieval).
"""
