"""Synthetic data drawn by this project: blob scenes for tests, the mouse generator and its lab-like rigs."""
