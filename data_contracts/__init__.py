"""Tandem's shipped contracts, as package data (YAML only; this file makes the folder findable
through importlib.resources wherever Tandem is installed, and keeps a folder of the same name
in the working directory from shadowing it)."""
