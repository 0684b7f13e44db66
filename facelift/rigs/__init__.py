"""Real rigs and recordings: calibration formats, the lens model, and animal-centred crops."""
