"""Build a C extension with AddressSanitizer and UBSan and run Python code against it (tests only)."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest


def run_sanitized(source: Path, module: str, code: str, tmp_path: Path) -> str:
    """Compile ``source`` as ``module`` with -fsanitize=address,undefined, run ``code`` in a fresh
    interpreter (``sys.argv[1]`` is the library's path) and return its output; fail on any report.
    Skips where gcc or its sanitizer runtimes are missing."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found")
    runtimes = [
        subprocess.run([gcc, f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
        for lib in ("libasan.so", "libubsan.so")
    ]
    if not all(Path(r).is_file() for r in runtimes):
        pytest.skip("the sanitizer runtimes are not installed")
    library = tmp_path / f"{module}.so"
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g", "-O1"]
    include = f"-I{sysconfig.get_paths()['include']}"
    subprocess.run([gcc, "-shared", "-fPIC", "-std=c99", *flags, include, str(source), "-o", str(library)], check=True)
    env = {
        **os.environ,
        "LD_PRELOAD": " ".join(runtimes),
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    run = subprocess.run([sys.executable, "-c", code, str(library)], capture_output=True, text=True, env=env)
    assert run.returncode == 0 and "runtime error" not in run.stderr, run.stderr[-3000:]
    return run.stdout


def load_extension(name: str, path: str):
    """The extension module at ``path`` (a sanitized build), imported as ``name``."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader(name, path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module
