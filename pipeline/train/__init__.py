"""Training and export of the project's own detector (needs the `train` extra: ultralytics + torch).

Nothing here is imported by the patrol at run time.
"""
