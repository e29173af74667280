"""The score.py that `sei build` copies into every build folder (a real, importable module)."""
