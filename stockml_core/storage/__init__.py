"""The embedded DuckDB warehouse and every store behind it, each table with one owner.

``warehouse`` (the file and its connections), ``registry`` (hash-checked model artefacts and the
champion history), ``pickles`` (hash-checked step outputs; old module names for unpickling),
``matrix_store`` (the memory-mapped training matrix) and ``side_tables`` (captured events, SHAP
analysis, the training-runs log, the read model of the asset tables).
"""
