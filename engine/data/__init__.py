"""Reading the user's data: files of every format, save_to_disk folders and Hub datasets.

May import engine.core, config and rundir.
"""
