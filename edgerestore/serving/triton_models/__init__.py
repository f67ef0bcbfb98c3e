"""Triton Python-backend model files that `export-triton` copies into a repository as `<model>/1/model.py`.
They run inside Triton's Python stub (where `triton_python_backend_utils` exists), not in this package."""
