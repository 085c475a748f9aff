"""The embedded default, built on the spot so that nothing is downloaded: a synthetic
dataset of coloured shapes with four-stage answers, and a tiny random-initialised vision-language
model whose tokenizer is trained on that dataset.
"""
