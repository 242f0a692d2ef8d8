"""Offline duplicate scoring of product pairs on one machine, resumable, through Triton or in-process ONNX Runtime.

``readers`` streams the input rows, ``scorers`` scores them (Triton's ``product_duplicate`` ensemble or the
in-process chain), ``journal`` writes them in order exactly once across interruptions, ``runner`` keeps requests
in flight between the three, ``command`` is `searchbar score`.
"""
