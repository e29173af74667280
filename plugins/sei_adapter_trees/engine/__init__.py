"""The tree engine: library code with no sei_framework imports (IR, import, bits, reference, HE)."""
