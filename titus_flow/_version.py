"""The version of titus-flow: the one place it is written.

Package metadata (pyproject's dynamic version), ``titus-flow --version`` and the
pinned install in EC2 user data all read it from here.
"""

__version__ = "0.2.0"
