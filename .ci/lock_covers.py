"""Fail when pyproject.toml asks for a package that requirements.lock did not install.

``pip check`` covers the runtime requirements of installed packages but not our extras, so the
test extra is checked here: every requirement of ``crawler[test]`` must be installed, at a
version its specifier admits.
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement

missing = []
for line in metadata.requires("crawler") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": "test"}):
        continue
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        missing.append(f"{req} (not installed)")
        continue
    if not req.specifier.contains(version, prereleases=True):
        missing.append(f"{req} (lock has {version})")
if missing:
    sys.exit("requirements.lock does not cover pyproject.toml: " + "; ".join(missing))
print("requirements.lock covers pyproject.toml and the test extra")
