"""The load benchmark (issue 5): `python -m bench`, see bench/README.md."""
