"""Locating offline model weights and loading them (see `weights` and `hf`)."""
