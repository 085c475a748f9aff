"""Running jobs safely: outputs that are complete or absent, fingerprints of a run's inputs,
trainings that resume after a kill, safe model loading, GPU claims for concurrent local jobs,
multi-node launch under SLURM, and the one summary line every step prints. Nothing here knows
the Sherlock method; every other subpackage may use it.
"""
