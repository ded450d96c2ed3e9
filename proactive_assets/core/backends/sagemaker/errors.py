"""What goes wrong on SageMaker: one base class, so a caller can catch every backend failure."""


class SageMakerError(RuntimeError):
    """A SageMaker job or endpoint did not reach the state we needed."""


class TrainingJobFailed(SageMakerError):
    """The training job ended Failed or Stopped; the message carries SageMaker's FailureReason."""


class EndpointFailed(SageMakerError):
    """Endpoint creation/update failed or was rolled back."""


class SageMakerScoringError(SageMakerError):
    """Scoring failed for good (retries exhausted, bad response, wrong model)."""


class SageMakerTimeout(SageMakerError, TimeoutError):
    """Polling gave up before the resource reached a final state."""
