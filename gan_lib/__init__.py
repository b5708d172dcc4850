"""hdp-gan: image preprocessing, DCGAN training, generation and labelling on Spark."""

__version__ = "0.1.0"
