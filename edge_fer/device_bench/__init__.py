"""Benchmarks of exported models on devices: ``edgefer bench`` here, on a GPU or on Raspberry Pis over SSH.

The measuring (latency, throughput, labels) is the device script of :mod:`edge_fer.runtime`; this
package chooses models and data, runs the script (:mod:`.script`, :mod:`.remote`) and scores its labels
(:mod:`.bench`).
"""
