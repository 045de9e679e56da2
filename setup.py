"""Package discovery for setuptools (everything else is in pyproject.toml).

``workflows/`` and ``activities/`` sit at the top of the repository, as the
design lays out, but ship inside the package as ``titus_flow.workflows`` and
``titus_flow.activities``: never as top-level modules, which would shadow
folders of the same name in users' repositories. Every other package is found,
not listed, so a new subpackage cannot be left out of the wheel.
"""

from setuptools import find_packages, setup

SHIPPED_INSIDE = {"titus_flow.workflows": "workflows", "titus_flow.activities": "activities"}

# In a checkout, titus_flow/workflows and titus_flow/activities are symlinks to
# the top-level folders (so pytest and mypy see the installed import paths); an
# sdist has no such links. Either way, they come from package_dir below.
packages = find_packages(
    include=["titus_flow", "titus_flow.*"],
    exclude=[f"{name}{suffix}" for name in SHIPPED_INSIDE for suffix in ("", ".*")],
)
for name, folder in SHIPPED_INSIDE.items():
    packages += [name, *(f"{name}.{sub}" for sub in find_packages(folder))]

setup(packages=packages, package_dir=SHIPPED_INSIDE)
