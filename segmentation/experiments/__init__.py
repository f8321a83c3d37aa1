"""Experiments that use both halves of prolab: they build label spaces (describe/embed/cluster/build)
and train and evaluate models on them (the held-out-class study of bench/train.py)."""
