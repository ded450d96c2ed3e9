"""Scoring (entity, ip) pairs with a trained model: on a real-time endpoint, or by batch transform.

The endpoint takes ``text/csv`` and answers ``{"predictions": [{"dot_product": x}, ...]}``; rows
are sent in batches under InvokeEndpoint's 6 MiB body cap, transient errors are retried with
jittered exponential backoff. Batch transform needs no endpoint and scores with exactly the model
it is given, so it suits backfills; it takes minutes to start.
"""

import io
import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from proactive_assets.core.backends.sagemaker.errors import SageMakerScoringError
from proactive_assets.core.backends.sagemaker.jobs import (
    DEFAULT_INSTANCE_TYPE,
    Clock,
    Sleep,
    job_completed,
    poll_until,
)
from proactive_assets.core.backends.sagemaker.training_data import (
    CSV_CONTENT_TYPE,
    join_s3_uri,
    parse_s3_uri,
    prepare_pairs,
)

JSON_ACCEPT = "application/json"
JSONLINES_ACCEPT = "application/jsonlines"
# botocore's model caps InvokeEndpoint bodies at 6 MiB; stay safely below by default.
INVOKE_BODY_LIMIT = 6_291_456
DEFAULT_MAX_PAYLOAD_BYTES = 5_000_000
DEFAULT_MAX_ROWS_PER_REQUEST = 10_000

# Error codes worth another attempt: throttling, transient service faults, model still loading.
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalDependencyException",
        "ModelNotReadyException",
        "RequestTimeout",
    }
)


@dataclass(frozen=True)
class SageMakerScores:
    """One ``dot_product`` per input row (NaN where the row could not be sent)."""

    dot_product: np.ndarray
    skipped_ipv6: int
    skipped_invalid: int = 0
    requests: int = 0


def _distinct_lines(lines: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct lines in first-seen order, and each line's position among them."""
    unique: dict[str, int] = {}
    inverse = np.fromiter((unique.setdefault(line, len(unique)) for line in lines), dtype=np.int64, count=len(lines))
    return list(unique), inverse


def _error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return type(error).__name__


def is_retryable(error: BaseException) -> bool:
    """Throttling, 5xx, model-side 5xx (ModelError) and connection problems are transient."""
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return True
    if not isinstance(error, ClientError):
        return False
    response = error.response
    code = _error_code(error)
    if code in RETRYABLE_ERROR_CODES:
        return True
    if code == "ModelError":
        original = response.get("OriginalStatusCode", response.get("Error", {}).get("OriginalStatusCode"))
        try:
            original_status = int(original)
        except (TypeError, ValueError):
            return False
        return original_status >= 500 or original_status == 429
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return isinstance(status, int) and status >= 500


def _batches(sizes: Sequence[int], max_bytes: int, max_rows: int) -> Iterable[tuple[int, int]]:
    """Greedy ``[start, stop)`` ranges whose newline-joined size stays within ``max_bytes``."""
    start = 0
    total = 0
    for i, size in enumerate(sizes):
        if size > max_bytes:
            raise ValueError(f"a single CSV row is {size} bytes, above max_payload_bytes={max_bytes}")
        extra = size + (1 if i > start else 0)
        if i > start and (total + extra > max_bytes or i - start >= max_rows):
            yield start, i
            start, total = i, size
        else:
            total += extra
    if start < len(sizes):
        yield start, len(sizes)


def _invoke_with_retry(
    runtime_client: Any,
    endpoint_name: str,
    body: bytes,
    *,
    where: str,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
    sleep: Sleep,
    rng: random.Random,
) -> bytes:
    """One InvokeEndpoint request, retried while the error is transient (``is_retryable``)."""
    last: BaseException | None = None
    for attempt in range(1, max_attempts + 1):
        try:
            response = runtime_client.invoke_endpoint(
                EndpointName=endpoint_name,
                ContentType=CSV_CONTENT_TYPE,
                Accept=JSON_ACCEPT,
                Body=body,
            )
            payload = response["Body"]
            return payload.read() if hasattr(payload, "read") else payload
        except (ClientError, BotoConnectionError, HTTPClientError) as error:
            last = error
            if not is_retryable(error):
                raise SageMakerScoringError(
                    f"invoke_endpoint on endpoint {endpoint_name!r} failed ({where}), not retried: "
                    f"{_error_code(error)}: {error}"
                ) from error
            if attempt < max_attempts:
                delay = min(backoff_max, backoff_base * 2 ** (attempt - 1))
                sleep(delay * rng.uniform(0.5, 1.0))
    raise SageMakerScoringError(
        f"invoke_endpoint on endpoint {endpoint_name!r} failed ({where}) after {max_attempts} "
        f"attempts: {_error_code(last) if last else ''}: {last}"
    ) from last


def _parse_predictions(raw: bytes, expected: int, endpoint_name: str, where: str) -> np.ndarray:
    """The ``dot_product`` values of one endpoint response, checked to be ``expected`` many."""
    try:
        document = json.loads(raw)
        predictions = document["predictions"]
        values = np.array([float(p["dot_product"]) for p in predictions], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as error:
        snippet = raw[:200].decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)[:200]
        raise SageMakerScoringError(
            f"endpoint {endpoint_name!r} returned an unreadable response ({where}): {snippet!r}"
        ) from error
    if len(values) != expected:
        raise SageMakerScoringError(
            f"endpoint {endpoint_name!r} returned {len(values)} predictions for {expected} rows ({where})"
        )
    return values


def score_pairs(
    runtime_client: Any,
    endpoint_name: str,
    entities: Sequence[Any],
    ips: Sequence[Any],
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    max_rows_per_request: int = DEFAULT_MAX_ROWS_PER_REQUEST,
    max_attempts: int = 5,
    backoff_base: float = 0.5,
    backoff_max: float = 20.0,
    sleep: Sleep = time.sleep,
    seed: int | None = None,
) -> SageMakerScores:
    """Score pairs on a real-time endpoint: ``text/csv`` in, ``{"predictions": [...]}`` out.

    Rows are sent in requests of at most ``max_payload_bytes`` / ``max_rows_per_request``
    (InvokeEndpoint caps bodies at 6 MiB); repeated pairs are sent once. Transient errors are
    retried with exponential backoff and jitter (seeded by ``seed``), ``max_attempts`` in all.
    """
    if not 0 < max_payload_bytes <= INVOKE_BODY_LIMIT:
        raise ValueError(f"max_payload_bytes must be in 1..{INVOKE_BODY_LIMIT}")
    if max_rows_per_request < 1 or max_attempts < 1:
        raise ValueError("max_rows_per_request and max_attempts must be at least 1")
    prepared = prepare_pairs(entities, ips)
    to_send, inverse = _distinct_lines(prepared.lines)
    encoded = [line.encode("utf-8") for line in to_send]
    ranges = list(_batches([len(b) for b in encoded], max_payload_bytes, max_rows_per_request))
    sent = np.empty(len(encoded), dtype=np.float64)
    rng = random.Random(seed)
    for number, (start, stop) in enumerate(ranges, 1):
        where = f"request {number}/{len(ranges)}, rows {start}..{stop - 1}"
        raw = _invoke_with_retry(
            runtime_client,
            endpoint_name,
            b"\n".join(encoded[start:stop]),
            where=where,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            sleep=sleep,
            rng=rng,
        )
        sent[start:stop] = _parse_predictions(raw, stop - start, endpoint_name, where)
    result = np.full(prepared.total_rows, np.nan, dtype=np.float64)
    if len(inverse):
        result[prepared.row_index] = sent[inverse]
    return SageMakerScores(
        dot_product=result,
        skipped_ipv6=prepared.skipped_ipv6,
        skipped_invalid=prepared.skipped_invalid,
        requests=len(ranges),
    )


def score_pairs_batch(
    sagemaker_client: Any,
    s3_client: Any,
    *,
    model_name: str,
    entities: Sequence[Any],
    ips: Sequence[Any],
    s3_uri_prefix: str,
    job_name: str,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    instance_count: int = 1,
    max_payload_mb: int = 6,
    poll_interval: float = 30.0,
    timeout: float = 2 * 3600,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> SageMakerScores:
    """Score pairs with a batch transform job on ``model_name`` (no endpoint needed).

    Input ``<prefix>/input/pairs.csv`` (each distinct pair once) is split by line; output is JSON
    Lines, one ``{"dot_product": x}`` per input line in order, read back from ``<prefix>/output/``.
    """
    prepared = prepare_pairs(entities, ips)
    unique, inverse = _distinct_lines(prepared.lines)
    result = np.full(prepared.total_rows, np.nan, dtype=np.float64)
    if not unique:
        return SageMakerScores(result, prepared.skipped_ipv6, prepared.skipped_invalid, 0)
    input_uri = join_s3_uri(s3_uri_prefix, "input", "pairs.csv")
    output_uri = join_s3_uri(s3_uri_prefix, "output")
    bucket, key = parse_s3_uri(input_uri)
    body = "".join(line + "\n" for line in unique).encode("utf-8")
    s3_client.upload_fileobj(io.BytesIO(body), bucket, key, ExtraArgs={"ContentType": CSV_CONTENT_TYPE})
    sagemaker_client.create_transform_job(
        TransformJobName=job_name,
        ModelName=model_name,
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=max_payload_mb,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": CSV_CONTENT_TYPE,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        TransformOutput={
            "S3OutputPath": output_uri,
            "Accept": JSONLINES_ACCEPT,
            "AssembleWith": "Line",
        },
        TransformResources={"InstanceType": instance_type, "InstanceCount": instance_count},
    )
    poll_until(
        lambda: sagemaker_client.describe_transform_job(TransformJobName=job_name),
        job_completed("TransformJobStatus", f"transform job {job_name}", SageMakerScoringError),
        what=f"transform job {job_name}",
        poll_interval=poll_interval,
        timeout=timeout,
        sleep=sleep,
        clock=clock,
    )
    out_bucket, out_prefix = parse_s3_uri(output_uri + "/")
    keys = [
        obj["Key"]
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=out_bucket, Prefix=out_prefix)
        for obj in page.get("Contents", [])
        if obj["Key"].endswith(".out")
    ]
    if len(keys) != 1:
        raise SageMakerScoringError(
            f"transform job {job_name}: expected one .out file under {output_uri}, found {keys}"
        )
    raw = s3_client.get_object(Bucket=out_bucket, Key=keys[0])["Body"].read().decode("utf-8")
    try:
        values = np.array(
            [float(json.loads(line)["dot_product"]) for line in raw.splitlines() if line.strip()],
            dtype=np.float64,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise SageMakerScoringError(f"transform job {job_name}: unreadable output {keys[0]}") from error
    if len(values) != len(unique):
        raise SageMakerScoringError(
            f"transform job {job_name} returned {len(values)} predictions for {len(unique)} rows"
        )
    if len(inverse):
        result[prepared.row_index] = values[inverse]
    return SageMakerScores(result, prepared.skipped_ipv6, prepared.skipped_invalid, 1)
