"""tf_cartola: installs the library, the Beam jobs and the serving code (also for Dataflow
workers).
"""

import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent


def _requirements(name: str):
    lines = (HERE / name).read_text().splitlines()
    return [line for line in lines if line and not line.startswith(("#", "-r"))]


setuptools.setup(
    name="tf_cartola",
    version="0.1.0",
    description="Cartola PRO model: Beam/TFDV/tf.Transform preprocessing, Keras training, TF "
    "Serving.",
    packages=setuptools.find_packages(
        include=["tf_cartola", "tf_cartola.*", "beam_jobs", "beam_jobs.*", "serving"]
    ),
    python_requires=">=3.9,<3.12",
    install_requires=_requirements("requirements.txt"),
    extras_require={"dev": _requirements("requirements-dev.txt")},
)
