"""Choosing hyper-parameters on tuning seeds (``clonebench tune``)."""
