"""Batch processing: run files, per-line accounting, a local runner and SLURM job scripts.

- :mod:`.stages` writes the run files of every stage for a pointing (one
  command per image, association or pointing, calling the stage scripts).
- :mod:`.exposures` gathers the exposures and the per-image values table;
  :mod:`.ceers_import` reads that table from existing CEERS ``.run`` files.
- :mod:`.runfile` reads and writes run files and their sidecars (each line's
  outputs).
- :mod:`.accounting` runs one line with its log and record, judges which lines
  are complete, reports failures and writes rerun files.
- :mod:`.runner` runs run files on one machine with N workers.
- :mod:`.slurm` writes the stage job scripts (TACC's launcher, pylauncher or
  GNU parallel) and submits them as an ``afterok`` chain; :mod:`.job` is what
  those jobs run around their launcher.

The command-line scripts are in ``batch_scripts/``.
"""
