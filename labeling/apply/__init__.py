"""Appliers: labeling functions and a task's other registered sources into sparse label entries.

`core` runs LFs on this machine (declarative ones as one DuckDB query, Python ones in isolated worker
processes), `dask` the same on a Dask cluster, `sources` turns a task's registered sources (LFs, weak-label
columns, upstream task outputs, model sources) into entries. torch-free.
"""
