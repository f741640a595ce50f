"""Imported by the forkserver before it forks writers: loads atlas and its compiled kernels once."""

from ._writer import warm

warm()
