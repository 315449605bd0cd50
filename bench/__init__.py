"""The scripts that print the tables of the README and docs/, each run from the repository root as
`python -m bench.<name>`; what they share (paths, the tiny run, child processes, markdown) is in harness.py.

Nothing is imported here: `bench.torch_dcgan` runs in a virtualenv holding only torch and NumPy.
"""
