"""What the benchmark scripts share (they run as files: this folder is on sys.path)."""
import argparse

DEFAULT_SHAPES = [(100, 1, 32, 32), (1000, 1, 32, 32), (100, 16, 64, 64), (100, 32, 128, 128),
                  (100, 64, 256, 256), (50, 64, 512, 512)]


def shape_arg(text):
    """argparse type of a T,B,I,H shape."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected T,B,I,H (four positive integers), got {text!r}")
    return shape
