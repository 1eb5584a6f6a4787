"""The verify stage: equivalence of original and slim runs, and the attack battery."""
