"""Copies the engine component that ``cargo build`` made (``<target>/wasm/wasm32-wasip2/release/
distlock_engine.wasm``; ``CARGO_TARGET_DIR`` moves ``<target>``) into the package at build time,
so ``pip install bindings/python`` ships it as package data. Fails when it is missing."""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


class BuildWithEngine(build_py):
    def run(self):
        target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
        wasm = target / "wasm" / "wasm32-wasip2" / "release" / "distlock_engine.wasm"
        packaged = HERE / "src" / "distlock" / "distlock_engine.wasm"
        if wasm.is_file():
            shutil.copyfile(wasm, packaged)
        elif not packaged.is_file():
            raise SystemExit(f"distlock: {wasm} is missing: run `cargo build` in {ROOT} first")
        super().run()


setup(cmdclass={"build_py": BuildWithEngine})
