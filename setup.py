# Metadata lives in pyproject.toml; this shim keeps `python setup.py ...` and
# tooling that predates PEP 517 working.
from setuptools import setup

setup()
