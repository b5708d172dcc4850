"""hdp-gan: DCGAN image generation and "how real are they?" scoring on Hadoop clusters."""

from setuptools import find_packages, setup

setup(
    name="hdp-gan",
    version="0.1.0",
    description="Preprocess images, train a DCGAN with TensorFlowOnSpark, generate and label "
                "images with a TF Hub classifier, with Hive tables and Oozie workflows.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=["gan_lib", "gan_lib.*", "jobs"]),
    install_requires=[
        "pyspark>=3.5,<4.1",
        "tensorflow>=2.16",
        "tensorflowonspark>=2.2.5",
        "tensorflow-hub>=0.16",
        "numpy>=1.26",
        "pandas>=2.0,<3",
        "pyarrow>=14",
        "hdfs>=2.7",
        "pillow>=10",
        # tensorflowonspark imports pkg_resources, which setuptools 82 removed
        "setuptools<82",
    ],
    extras_require={
        "kerberos": ["hdfs[kerberos]>=2.7"],
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "xmlschema>=3", "pyhive>=0.7",
                "thrift>=0.16", "thrift-sasl>=0.4", "pure-sasl>=0.6"],
    },
    entry_points={"console_scripts": ["hdp-gan=jobs.cli:main"]},
)
