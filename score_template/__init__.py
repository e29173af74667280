"""The entry scripts `sei build` copies into every build folder: score.py (online, azmlinfsrv) and
batch_score.py (Azure ML batch endpoints); real, importable modules."""
