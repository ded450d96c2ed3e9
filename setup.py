from setuptools import find_packages, setup

setup(
    name="proactive_assets",
    version="0.1.0",
    description="Suspicious identity/IP activity in AWS logs, as day-partitioned Dagster assets",
    packages=find_packages(exclude=["proactive_assets_tests", "benchmarks"]),
    python_requires=">=3.11",
    install_requires=[
        "dagster>=1.13,<1.14",
        "dagster-aws>=0.29,<0.30",
        "dagster-webserver>=1.13,<1.14",
        "boto3>=1.34",
        "pandas>=2.2",
        "pyarrow>=17",
        "numpy>=1.26",
        "sagemaker>=3.0",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "moto[server,s3,sqs,sns,sagemaker]>=5.0",
            "ruff>=0.6",
            "psutil>=5.9",
            "playwright>=1.40",
        ],
    },
    entry_points={"console_scripts": ["proactive-assets=proactive_assets.cli:main"]},
)
