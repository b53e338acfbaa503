"""The `animbench` command, the top floor: it drives data_prep, methods, metrics and reports,
and nothing imports it but the Snakefile (for the workflow config check)."""
