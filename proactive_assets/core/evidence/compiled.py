"""The evidence's compiled hot loops (``_evidence_kernels.c``, built by setup.py where a C compiler
is), or ``None``: the numpy code beside each use gives the same answers, only slower."""

try:
    from proactive_assets.core.evidence import _evidence_kernels as kernels
except ImportError:  # pragma: no cover - depends on the install
    kernels = None

__all__ = ["kernels"]
