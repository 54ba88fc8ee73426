"""The run list's and the comparison's data: scans of the runs root, rows and columns."""
