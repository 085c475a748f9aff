"""Perturbed continuations, shared by Stages II and III: the two recipes (truncation
points, image noise; ``recipes``) and the job that turns reference answers into preference
records by letting a model continue a truncated answer on a perturbed image (``pairs``).
"""
