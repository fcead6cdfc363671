"""A run's output folder: trials.jsonl, summary.json and plots, shared by run and simulate."""
