"""On-disk formats: the manifest (commit record) and segment files (chunks + columnar index)."""
