"""How a reconstruction is scored: metrics per view, aggregates, plots and training curves."""
