"""Training, export, evaluation and reduced-precision copies of the project's own detector.

Training and exporting a checkpoint need the `train` extra (ultralytics + torch), imported inside
those functions only; evaluation runs the patrol's own Detector on ONNX Runtime. Nothing here is
imported by the patrol at run time.
"""
